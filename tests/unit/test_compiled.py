"""toad/compiled.py: the cache digest covers every source compiled code depends on,
and the primitives of toad/rings/atomics.py do what they say."""
from __future__ import annotations

import ast
import pathlib

import numpy as np

from toad import compiled
from toad.rings.atomics import full_fence, read_cycles

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("toad", "engine", "host")


def imported_modules(name: str) -> set[str]:
    """toad/engine/host modules a module imports names from."""
    tree = ast.parse((ROOT / (name.replace(".", "/") + ".py")).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] in PACKAGES:
            for alias in node.names:     # ``from toad import layout`` imports a module
                sub = f"{node.module}.{alias.name}"
                is_module = (ROOT / (sub.replace(".", "/") + ".py")).exists()
                found.add(sub if is_module else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
    return found


def test_every_source_a_kernel_module_compiles_in_is_in_the_digest():
    """A kernel module's imports from toad, engine or host are kernels or helpers
    (KERNEL_MODULES) or constants compiled in (CONSTANT_MODULES): a change in any of
    them must give another cache directory, or cached code would keep old offsets."""
    known = set(compiled.KERNEL_MODULES) | set(compiled.CONSTANT_MODULES) | {"toad.compiled"}
    for name in compiled.KERNEL_MODULES:
        assert imported_modules(name) <= known, (name, imported_modules(name) - known)


def test_every_module_that_declares_kernels_is_listed():
    listed = {ROOT / (n.replace(".", "/") + ".py") for n in compiled.KERNEL_MODULES}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            if "@kernel(" in text or "@helper" in text:
                assert path in listed, f"{path} declares compiled code: add it to KERNEL_MODULES"


def test_every_kernel_module_is_marked_compiled_after_import():
    compiled.warm()
    assert compiled.missing() == []


def test_the_python_fence_and_the_cycle_counter_run():
    full_fence()
    first = read_cycles()
    assert read_cycles() >= first and isinstance(first, int)
    assert np.int64(first) == first
