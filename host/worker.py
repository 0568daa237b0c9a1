"""A host worker process: one side (send or receive) of one run.

    python -m host.worker --config RUN.yaml --role send|recv --out RESULT.json [--ready FILE]
    python -m host.worker --config RUN.yaml --check      # can this mode run here?

The launcher (toad.experiment.launcher) writes the run's effective config to a
temporary file, starts the receiving worker, waits for its ``--ready`` file (it
listens), then starts the sending worker. Each worker calibrates the cost of a
chunk-sized copy on its own (pinned) CPU, runs the workload of ``workload.kind`` over
the network of ``mode`` and writes one JSON object to ``--out`` (written to a
temporary name, then renamed: the launcher never reads half a file). On an error the
object is ``{"error": "one line"}`` and the exit status is non-zero.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from toad.config import Config, load
from toad.errors import ToadError
from toad.memory import keep_heap
from toad.experiment.accounting import calibrate_copy_median
from host import workloads, workloads_many
from host.copy_timer import COPY_TIMER

NOT_BUILT = {
    "offload": "offload mode needs host.sockets, not built yet",
    "inhost": "inhost mode needs host.inhost, not built yet",
}


def open_network(config: Config, role: str, kernel_address: str | None = None):
    """The network object of ``config.mode`` for one side (recv = side "a"; on a TAP
    toad's only process is side "a", Linux being the other side).

    ``kernel_address``: this worker is the Linux peer of a TAP run (it runs inside the
    namespace): Linux sockets on that address, whatever the config's mode.
    """
    side = "a" if role == "recv" or config.nic.kind == "tap" else "b"
    if config.mode == "kernel" or kernel_address:
        from host.kernelnet import KernelNetwork
        return KernelNetwork(config, side, address=kernel_address or "127.0.0.1")
    try:
        if config.mode == "inhost":
            from host.inhost import InhostNetwork
            return InhostNetwork(config, side=side)
        from host.sockets import OffloadNetwork
        return OffloadNetwork(config)
    except ImportError as exc:
        if exc.name in ("host.inhost", "host.sockets"):
            raise ToadError(NOT_BUILT[config.mode]) from None
        raise


def server_address(config: Config, network, connect_to: str | None = None) -> str:
    """Where the receiving side listens (and the sending side connects)."""
    if connect_to:
        return connect_to
    address = getattr(network, "listen_address", None)
    if address:
        return address
    if config.nic.kind == "tap":
        return config.nic.tap.address.split("/")[0]
    return config.nic.address.split("/")[0]


def plan_of(config: Config) -> workloads.Plan:
    w = config.workload
    return workloads.Plan(chunk=w.chunk_bytes[0], size=w.sizes[0], warmup_s=w.warmup_s,
                          duration_s=w.duration_s, host_cpus=config.host.cpus,
                          flip_at=int(os.environ.get("TOAD_TEST_FLIP_AT", "-1")),
                          connections=w.connections if w.kind != "bulk" else 1)


def wait_for(path: str, timeout_s: float = 60.0) -> None:
    """Wait (bounded) for the launcher's go-ahead file: the peer is listening."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise ToadError(f"the peer did not start listening within {timeout_s:.0f} s")
        time.sleep(0.01)


def run_role(config: Config, role: str, ready_path: str | None, args=None) -> dict:
    plan = plan_of(config)
    kind = config.workload.kind
    unit = plan.chunk if kind == "bulk" else plan.size
    copy_cost, copy_low, copy_high = calibrate_copy_median(unit)
    COPY_TIMER.period = config.workload.copy_sample
    many = plan.connections > 1
    if many and (config.mode == "kernel" or getattr(args, "kernel_address", None)):
        workloads_many.raise_descriptor_limit(plan.connections)
    network = open_network(config, role, getattr(args, "kernel_address", None))
    try:
        if getattr(args, "wait_for", None):
            wait_for(args.wait_for)
        address = (server_address(config, network, getattr(args, "connect_to", None)),
                   config.workload.port)
        if role == "recv":
            listener = workloads.listen(network, address[0], address[1],
                                        max(128, plan.connections))
            try:
                if ready_path:
                    write_json(ready_path, {"pid": os.getpid()})
                if kind == "bulk":
                    sock, _ = listener.accept()
                    try:
                        result = workloads.bulk_recv(sock, plan,
                                                     getattr(args, "stream_header", 0) or 0)
                    finally:
                        sock.close()
                elif many:
                    serve = (workloads_many.crr_many_server if kind == "crr"
                             else workloads_many.rr_many_server)
                    result = serve(listener, plan)
                else:
                    result = workloads.rr_server(listener, plan, new_connection=kind == "crr")
            finally:
                listener.close()
        elif kind == "bulk":
            sock = network.create_connection(address, timeout=30)
            try:
                mark_started(args)
                result = workloads.bulk_send(sock, plan)
            finally:
                sock.close()
        elif many:
            mark_started(args)
            client = (workloads_many.crr_many_client if kind == "crr"
                      else workloads_many.rr_many_client)
            result = client(network, address, plan)
        else:
            mark_started(args)
            result = workloads.rr_client(network, address, plan, new_connection=kind == "crr")
    finally:
        network.close()
    counters = getattr(network, "counters", None)   # in-host: this process's stack
    if counters is not None:
        result["stack_counters"] = dict(counters)
    host_counters = getattr(network, "host_counters", None)   # offload: the driver's
    if host_counters is not None:
        result["host_counters"] = dict(host_counters)
    result.update({"role": role, "pid": os.getpid(),
                   "affinity": sorted(os.sched_getaffinity(0)),
                   "copy_s_per_byte": copy_cost, "copy_s_per_byte_range": [copy_low, copy_high],
                   "copy_timed": COPY_TIMER.summary()})
    return result


def mark_started(args) -> None:
    """Tell the launcher the workload begins (its progress counts from here)."""
    path = getattr(args, "started", None)
    if path:
        with open(path, "w"):
            pass


def write_json(path: str, obj: dict) -> None:
    """Write then rename, so a reader never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m host.worker")
    parser.add_argument("--config")
    parser.add_argument("--role", choices=("send", "recv"))
    parser.add_argument("--out")
    parser.add_argument("--ready")
    parser.add_argument("--cpu", type=int, help="pin this worker to one CPU")
    parser.add_argument("--kernel-address", help="TAP peer: Linux sockets on this address")
    parser.add_argument("--connect-to", help="address of the receiving side (TAP runs)")
    parser.add_argument("--wait-for", help="connect only once this file exists")
    parser.add_argument("--stream-header", type=int, default=0, metavar="N",
                        help="bulk receiver: the sender puts up to N bytes of its own "
                             "ahead of the stream (iperf 2's header)")
    parser.add_argument("--started", metavar="FILE",
                        help="sending side: create FILE when the workload begins")
    parser.add_argument("--check", action="store_true",
                        help="only check that the config's mode can run here")
    parser.add_argument("--compile", action="store_true",
                        help="only compile (or load) the host's compiled code, then exit")
    args = parser.parse_args(argv)
    if args.compile:
        import host.inhost, host.sockets, engine.fast.path  # noqa: E401,F401 (kernels compile)
        return 0
    if not args.config:
        parser.error("--config is required")
    try:
        config = load(args.config)
        if args.check:
            check_mode(config)
            return 0
        if not (args.role and args.out):
            raise ToadError("host.worker: --role and --out are required")
        if args.cpu is not None:
            pin(args.cpu)
        keep_heap(config.heap_trim_bytes)
        write_json(args.out, run_role(config, args.role, args.ready, args))
        return 0
    except ToadError as exc:
        return fail(args.out, str(exc))
    except (OSError, EOFError) as exc:
        return fail(args.out, f"{args.role} worker: {type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug: keep the traceback on stderr, one line for the user
        traceback.print_exc()
        return fail(args.out, f"{args.role} worker crashed: {type(exc).__name__}: {exc}")


def pin(cpu: int) -> None:
    """Pin this process (after the config was validated against the full CPU set)."""
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        raise ToadError(f"host.cpus: cannot pin a worker to CPU {cpu}: {exc.strerror}") from None


def check_mode(config: Config) -> None:
    """Raise the one-line error when the mode's modules are missing."""
    if config.mode == "inhost":
        try:
            import host.inhost  # noqa: F401
        except ImportError as exc:
            if exc.name == "host.inhost":
                raise ToadError(NOT_BUILT["inhost"]) from None
            raise
    elif config.mode == "offload":
        try:
            import host.sockets  # noqa: F401
        except ImportError as exc:
            if exc.name == "host.sockets":
                raise ToadError(NOT_BUILT["offload"]) from None
            raise


def fail(out: str | None, message: str) -> int:
    print(f"toad: error: {message}", file=sys.stderr)
    if out:
        write_json(out, {"error": message})
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
