"""Linux page machinery for large output arrays: huge-page advice, pre-faulting, release, free memory.

`magi1/video.py` fills one large float32 array frame by frame. On a 2-core machine the kernel's
first-touch faults on that array cost as much as the decoding (see bench/README.md), so:
- `no_huge_pages(array)` asks for 4 KiB pages (`MADV_NOHUGEPAGE`) before any page exists. In a VM
  that returns free memory to its host (free page reporting: cloud machines), the kernel hands
  huge pages out of exactly the blocks it gave back, and each costs a round trip to the host.
  Measured on 5 GB of fresh output: 10–14 s of kernel time with huge pages, 1.3–2.7 s without;
- `Prefaulter` faults pages in on the idle core, a bounded distance ahead of the writer
  (`MADV_POPULATE_WRITE`, Linux ≥ 5.14, which never changes data);
- `release(array)` hands pages written for frames that never came back to the kernel;
- `available_bytes()` is what can be allocated without swapping or the OOM killer.
Everywhere but Linux the advice is a no-op.
"""
from __future__ import annotations

import ctypes
import logging
import mmap
import os
import sys
import threading

import numpy as np

log = logging.getLogger(__name__)

MADV_POPULATE_WRITE = 23
MADV_NOHUGEPAGE = 15
MADV_DONTNEED = 4
# The pre-faulting thread works in steps of this many bytes, checking for the end in between.
PREFAULT_STEP = 32 << 20
# ...and stays at most this far ahead of the writer, so a frame count that was too high
# costs no memory that is never written.
PREFAULT_AHEAD = 256 << 20


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.madvise.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError) as error:
        log.debug("no madvise (%s): no memory advice", error)
        return None


_libc = _load_libc()


def _page_start(address: int) -> int:
    return address - address % mmap.PAGESIZE


def advise(array: np.ndarray, advice: int) -> None:
    """madvise over every page `array` touches (only for advice that never changes data)."""
    if _libc is not None and array.size:
        start = _page_start(array.ctypes.data)
        _libc.madvise(start, array.ctypes.data + array.nbytes - start, advice)


def no_huge_pages(array: np.ndarray) -> None:
    advise(array, MADV_NOHUGEPAGE)


def release(array: np.ndarray) -> None:
    """Hand the whole pages inside `array` back to the kernel (they read as zeros afterwards)."""
    if _libc is None or array.size == 0:
        return
    end = array.ctypes.data + array.nbytes
    first = _page_start(array.ctypes.data + mmap.PAGESIZE - 1)
    last = _page_start(end)
    if last > first:
        _libc.madvise(first, last - first, MADV_DONTNEED)


def available_bytes() -> int | None:
    """Memory a new allocation can use (Linux `MemAvailable`, else psutil), None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # ComfyUI installs it; optional here

        return int(psutil.virtual_memory().available)
    except (ImportError, AttributeError, OSError):
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


class Prefaulter(threading.Thread):
    """Faults the output's pages in on the idle core, ahead of the writer.

    The first touch of fresh memory costs the kernel about as much as decoding the frame (here
    0.25–0.5 ms per MB, 3–6 ms per 720p frame). ctypes releases the GIL for the madvise call, so
    this runs truly in parallel with the decoder and the converter. It stays within
    `PREFAULT_AHEAD` bytes of the writer (`writer_at`, frames written so far).
    """

    def __init__(self, array: np.ndarray, frames: int) -> None:
        super().__init__(name="magi1-prefault", daemon=True)
        self._array = array
        self._frames = frames
        self._stopped = threading.Event()
        self.writer_at = 0  # a plain int is atomic enough for a hint

    @classmethod
    def start_for(cls, array: np.ndarray, frames: int) -> Prefaulter | None:
        if _libc is None or frames == 0:
            return None
        prefaulter = cls(array, frames)
        prefaulter.start()
        return prefaulter

    def run(self) -> None:
        frame_bytes = self._array[0].nbytes
        base = _page_start(self._array.ctypes.data)
        offset = self._array.ctypes.data - base
        end = offset + self._frames * frame_bytes
        position = 0
        while position < end and not self._stopped.is_set():
            writer = offset + self.writer_at * frame_bytes
            # Never fault behind the writer (it faults those pages itself anyway), nor far ahead.
            position = max(position, writer)
            position -= position % mmap.PAGESIZE
            length = min(PREFAULT_STEP, end - position, writer + PREFAULT_AHEAD - position)
            if length <= 0:
                if end - position <= 0:
                    break
                self._stopped.wait(0.002)
                continue
            if _libc.madvise(base + position, length, MADV_POPULATE_WRITE) != 0:
                log.debug("MADV_POPULATE_WRITE unavailable (errno %d); no pre-faulting", ctypes.get_errno())
                return
            position += length

    def stop(self) -> None:
        self._stopped.set()
        self.join()
