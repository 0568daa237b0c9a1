"""An asyncio streams echo server (plain asyncio): echoes each connection's bytes
until EOF, then closes it. Prints "up" once listening.

    python3 echo_server.py HOST PORT
"""
import asyncio
import sys


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main():
    server = await asyncio.start_server(echo, sys.argv[1], int(sys.argv[2]), backlog=2048)
    print("up", flush=True)
    async with server:
        await server.serve_forever()


try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
