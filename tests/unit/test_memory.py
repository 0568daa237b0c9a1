"""toad.memory.keep_heap: freed frames no longer cost page faults when reallocated."""
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from toad.config import ConfigError, load

REPO = Path(__file__).resolve().parents[2]

# Eight 64 KB frames built and freed, over and over, as the stack does per burst;
# prints the minor page faults per frame once the loop is warm.
FRAMES = """
import resource, sys
from toad.memory import keep_heap
applied = keep_heap(int(sys.argv[1]))
payload, headers = bytes(65483), bytes(66)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    frames = [b"".join((headers, payload)) for _ in range(8)]
    del frames
start = faults()
for _ in range(300):
    frames = [b"".join((headers, payload)) for _ in range(8)]
    del frames
print(applied, (faults() - start) / 2400)
"""


def faults_per_frame(trim_bytes: int) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", FRAMES, str(trim_bytes)], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    applied, faults = out.split()
    return applied, float(faults)


def test_a_kept_heap_reuses_the_pages_of_freed_frames():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt's trim threshold is glibc's")
    applied, faults = faults_per_frame(load(None).heap_trim_bytes)
    assert applied == "True" and faults < 0.1
    # and the cost it removes, with glibc's own threshold (0: not applied)
    applied, faults = faults_per_frame(0)
    assert applied == "False" and faults > 1


def test_heap_trim_bytes_is_checked():
    with pytest.raises(ConfigError, match="heap_trim_bytes: -1 must be between 0"):
        load(None, ["heap_trim_bytes=-1"])
