"""Time the zero-copy steps against a real engine: ``send_next`` (commit a view, lend
the next) and ``recv_next`` (give a view back, take the next), one call at a time.

    PYTHONPATH=. python3 scripts/zero_copy_steps.py CHUNK [STEPS]

Starts ``python -m engine`` busy-polling on CPU 1 (the default config's queue-pair
sizes), connects two offloaded sockets of one process pinned to CPU 0, writes STEPS
chunks through send views in the main thread while a second thread reads them
through receive views, and prints each step's p50, p90 and mean in microseconds (the
mean includes the waits for the engine; p50 and p90 are the step itself).
"""
from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.getcwd())
from host.sockets import OffloadNetwork
from tests.system.test_offload_sockets import EngineRun


def main(chunk: int, steps: int) -> None:
    run = EngineRun(["engine.cpu=1", "engine.polling=busy",
                     f"qp.recv_buffer_bytes={chunk}", "qp.recv_pool_bytes=8388608",
                     "qp.send_buffer_bytes=16777216", "qp.send_share_bytes=4194304",
                     "qp.send_space_threshold=2097152"], "steps")
    try:
        config = run.config()
        os.sched_setaffinity(0, {0})
        with OffloadNetwork(config) as net:
            listener = net.listen(7600)
            client = net.create_connection((net.listen_address, 7600))
            server, _ = listener.accept()
            sent, got = np.zeros(steps, np.int64), np.zeros(steps, np.int64)

            def reader() -> None:
                zc, clock, i = server.zero_copy, time.perf_counter_ns, 0
                view = zc.recv_view()
                while len(view):
                    start = clock()
                    view = zc.recv_next(view)
                    if i < steps:
                        got[i] = clock() - start
                    i += 1

            thread = threading.Thread(target=reader)
            thread.start()
            zc, clock = client.zero_copy, time.perf_counter_ns
            view = zc.send_view(chunk)
            for i in range(steps):
                start = clock()
                view = zc.send_next(view, chunk)
                sent[i] = clock() - start
            zc.send_commit(view, 0)
            client.shutdown(1)
            thread.join()
            for name, times in (("send_next", sent), ("recv_next", got)):
                times = times[times > 0] / 1000
                print(f"{chunk} B {name}: p50 {np.percentile(times, 50):.2f} us, p90 "
                      f"{np.percentile(times, 90):.2f}, mean {times.mean():.2f} "
                      f"({len(times)} steps)")
            client.close()
            server.close()
    finally:
        run.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 20000)
