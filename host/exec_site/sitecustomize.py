"""``toad exec``'s startup hook: toad/exec_cmd.py puts this directory first on the
program's PYTHONPATH, so every Python process it starts (and their Python children)
runs this before the program: TCP/IPv4 sockets become offloaded ones
(host/offload_exec.py). The ``sitecustomize`` this one shadows, if any, runs after."""
import os
import sys


def _run_shadowed() -> None:
    """Run the next ``sitecustomize`` on the path (a distribution's), as Python would."""
    import importlib.machinery
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if "TOAD_EXEC" in os.environ:
    try:
        from host.offload_exec import start_from_env
    except ImportError as exc:
        sys.stderr.write(f"toad: error: this Python ({sys.executable}) cannot load toad's "
                         f"host side ({exc}): run the program with the Python toad runs "
                         "on (toad exec -- python3 ... uses it)\n")
        sys.stderr.flush()
        os._exit(2)
    start_from_env()
_run_shadowed()
