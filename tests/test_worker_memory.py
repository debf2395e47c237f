"""The worker's allocator setting (``tune_malloc``): large freed buffers go back to the system."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from tests.support import ROOT

# In a fresh interpreter: free one 1 MiB buffer (glibc then raises its mmap threshold to 1 MiB,
# unless tune_malloc fixed it), then allocate 512 KiB and report whether malloc mapped it.
PROBE = """
import ctypes, sys
sys.path.insert(0, {root!r})
from opsintel.memory import tune_malloc
if {tuned}:
    assert tune_malloc()
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class MI(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MI
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblkhd
p = libc.malloc(512 << 10)
print(libc.mallinfo2().hblkhd - before >= 512 << 10)
libc.free(p)
"""


def mapped_after_a_large_free(tuned: bool) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), tuned=tuned)],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_large_buffers_stay_mapped_after_tune_malloc() -> None:
    assert not mapped_after_a_large_free(tuned=False)  # glibc's dynamic threshold: from the heap
    assert mapped_after_a_large_free(tuned=True)  # fixed at 128 KiB: mapped, returned when freed
