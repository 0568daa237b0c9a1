"""64 B request/response over asyncio streams: plain asyncio, nothing of toad, so
``toad bench readiness`` runs it unchanged under ``toad exec`` (offloaded) and
``toad exec --kernel`` (Linux's TCP).

    python3 asyncio_rr.py server HOST PORT
    python3 asyncio_rr.py client HOST PORT ROUND_TRIPS WARMUP

The server prints "up" when listening, echoes each connection's bytes back, and after
its second connection prints a JSON line: that connection's round trips (messages),
wall seconds, and CPU seconds of the whole process (every thread) from its first
byte to its EOF; then it exits. The client makes the two connections: WARMUP round
trips, closed, then ROUND_TRIPS timed ones, each 64 bytes sent and the same 64 read
back (compared); it prints p50/p99 in µs and its CPU seconds over the timed ones.
"""
import asyncio
import json
import statistics
import sys
import time

SIZE = 64


async def serve(host: str, port: int) -> None:
    done = asyncio.get_running_loop().create_future()
    served = []

    async def echo(reader, writer):
        messages, cpu0, t0 = 0, None, 0.0
        while data := await reader.read(65536):
            if cpu0 is None:
                cpu0, t0 = time.process_time(), time.monotonic()
            messages += len(data) / SIZE
            writer.write(data)
        cpu, wall = time.process_time() - (cpu0 or 0.0), time.monotonic() - t0
        writer.close()
        await writer.wait_closed()
        served.append({"round_trips": round(messages), "wall_s": wall, "cpu_s": cpu})
        if len(served) == 2 and not done.done():
            done.set_result(served[1])

    server = await asyncio.start_server(echo, host, port)
    print("up", flush=True)
    async with server:
        print(json.dumps(await done), flush=True)


async def one_connection(host: str, port: int, round_trips: int, timed: bool) -> dict:
    reader, writer = await asyncio.open_connection(host, port)
    message = bytes(range(SIZE))
    times = []
    cpu0, t0 = time.process_time(), time.monotonic()
    for _ in range(round_trips):
        start = time.perf_counter_ns()
        writer.write(message)
        answer = await reader.readexactly(SIZE)
        times.append(time.perf_counter_ns() - start)
        if answer != message:
            raise SystemExit("asyncio_rr: the echo differs from the request")
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    writer.close()
    await writer.wait_closed()
    if not timed:
        return {}
    times.sort()
    return {"round_trips": round_trips, "p50_us": statistics.median(times) / 1000,
            "p99_us": times[int(0.99 * (len(times) - 1))] / 1000, "cpu_s": cpu,
            "wall_s": wall}


async def client(host: str, port: int, round_trips: int, warmup: int) -> None:
    await one_connection(host, port, warmup, timed=False)
    print(json.dumps(await one_connection(host, port, round_trips, timed=True)), flush=True)


if __name__ == "__main__":
    role, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "server":
        asyncio.run(serve(host, port))
    else:
        asyncio.run(client(host, port, int(sys.argv[4]), int(sys.argv[5])))
