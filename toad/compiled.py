"""How toad compiles its data path: numba kernels with explicit signatures, cached.

Every compiled function in toad is declared with :func:`kernel` (a Python-callable
kernel with explicit signatures, compiled when its module is imported) or
:func:`helper` (called only from other compiled code, compiled into its callers).
Their modules are listed in :data:`KERNEL_MODULES`.

Caching (numba's ``cache=True``) keys each function on its own file only: a change to
a helper in another file would leave its callers' cached code stale. So the cache
lives in a directory named after a digest of every file in :data:`KERNEL_MODULES`
(``~/.cache/toad/numba/<digest>``, or ``$TOAD_NUMBA_CACHE/<digest>``): any change
there compiles everything again, once. Each kernel module ends with :func:`loaded`,
which marks it compiled; a process about to compile a module without that mark says
so on stderr first (a first run takes a while). The experiment launcher compiles
both sides in two short processes (``python -m engine --compile`` and ``python -m
host.worker --compile``) before it starts anything timed, when :func:`missing`
names a module.

Calls from Python go through :func:`entry`, the compiled wrapper of one signature:
it skips numba's dispatcher (type inference of every argument, ~100 ns per array and
far more for a structured array) and still refuses an argument of the wrong type.
Compiled calls hold the GIL: each one is atomic with respect to the process's other
Python threads, which is the lock of the host driver's ring state.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import shutil
import sys
import time
from pathlib import Path

# Every module that declares kernels or helpers, and every module whose constants they
# compile in (field offsets, sizes): the sources of the digest.
CONSTANT_MODULES = ("toad.layout", "host.copy_align")
KERNEL_MODULES = (
    "toad.rings.atomics",
    "toad.rings.index",
    "toad.rings.records",
    "toad.rings.calls",
    "toad.rings.bus",
    "engine.frames",
    "engine.nic.shm_ring",
    "engine.tcp.checksum",
    "engine.ring_calls",
    "engine.fast.flows",
    "engine.fast.rx",
    "engine.fast.tx",
    "host.datapath",
)
_ROOT = Path(__file__).resolve().parents[1]
PRUNE_AFTER_S = 7 * 86400
_announced = False


def _module_file(name: str) -> Path:
    return _ROOT.joinpath(*name.split(".")).with_suffix(".py")


def source_digest() -> str:
    """A digest of the source of every kernel module (names and contents)."""
    digest = hashlib.sha256(importlib.metadata.version("numba").encode())
    for name in (*KERNEL_MODULES, *CONSTANT_MODULES):
        digest.update(name.encode())
        digest.update(_module_file(name).read_bytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("TOAD_NUMBA_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "toad" / "numba"


CACHE_DIR = cache_root() / source_digest()


def _mark(name: str) -> Path:
    return CACHE_DIR / f"{name}.compiled"


def missing() -> list[str]:
    """Kernel modules not compiled into this digest's cache yet."""
    return [name for name in KERNEL_MODULES if not _mark(name).exists()]


def _announce(module: str) -> None:
    global _announced
    if _announced or _mark(module).exists():
        return
    _announced = True
    print(f"toad: compiling the data path with numba (first run after an install or a "
          f"change, about a minute; cached in {CACHE_DIR})", file=sys.stderr, flush=True)


def _compile(func, signatures, options):
    import numba             # (imported here: the launcher reads marks without it)
    saved = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(CACHE_DIR)   # read when the function's cache is made
    try:
        return numba.njit(signatures, cache=True, **options)(func) if signatures \
            else numba.njit(cache=True, **options)(func)
    finally:
        numba.config.CACHE_DIR = saved


def kernel(*signatures, **options):
    """A compiled function callable from Python, one compiled version per signature."""
    def wrap(func):
        _announce(func.__module__)
        return _compile(func, list(signatures), options)
    return wrap


def helper(func=None, **options):
    """A compiled function called only from compiled code (typed by its callers)."""
    import numba
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)


def entry(dispatcher, index: int = 0):
    """The compiled wrapper of ``dispatcher``'s ``index``-th signature: a direct call."""
    return dispatcher.overloads[dispatcher.signatures[index]].entry_point


def loaded(name: str) -> None:
    """Kernel module ``name`` is compiled (or loaded) into the cache: mark it so, and
    remove caches of other sources unused for PRUNE_AFTER_S (another checkout's
    cache in use stays). An unwritable cache directory only costs the mark (numba
    then caches beside the sources, or not at all)."""
    mark = _mark(name)
    try:
        if mark.exists():
            os.utime(CACHE_DIR)           # in use: another checkout's prune spares it
            return
        fresh = not CACHE_DIR.exists()
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        mark.write_text(f"{time.time():.0f}\n")
    except OSError:
        return
    if fresh:
        for old in cache_root().iterdir():
            if old.is_dir() and old != CACHE_DIR and \
                    time.time() - old.stat().st_mtime > PRUNE_AFTER_S:
                shutil.rmtree(old, ignore_errors=True)


def warm(modules=KERNEL_MODULES) -> float:
    """Import (so compile or load) the named kernel modules; the seconds it took."""
    start = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return time.perf_counter() - start
