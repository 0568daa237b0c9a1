"""An asyncio streams client (plain asyncio): N connections at once, each sends its
own seeded bytes in pieces and reads them back; every byte compared. Prints a JSON
report.

    python3 echo_client.py HOST PORT CONNECTIONS BYTES_EACH
"""
import asyncio
import hashlib
import json
import random
import sys

HOST, PORT, COUNT, EACH = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


async def one(index: int, opened: asyncio.Event, ready: list):
    reader, writer = await asyncio.open_connection(HOST, PORT)
    ready.append(index)
    if len(ready) == COUNT:
        opened.set()
    await opened.wait()                      # every connection is open at once
    rng = random.Random(index)
    data = rng.randbytes(EACH)
    back = bytearray()
    for start in range(0, EACH, 4096):
        writer.write(data[start:start + 4096])
        await writer.drain()
        while len(back) < min(EACH, start + 4096):
            back += await reader.read(65536)
    writer.write_eof()
    tail = await reader.read()
    writer.close()
    await writer.wait_closed()
    return back == data and not tail, hashlib.sha256(back).hexdigest()


async def main():
    opened, ready = asyncio.Event(), []
    results = await asyncio.gather(*(one(i, opened, ready) for i in range(COUNT)))
    print(json.dumps({"connections": len(results), "equal": sum(ok for ok, _ in results),
                      "bytes_each": EACH}))


asyncio.run(main())
