"""magi1.page_memory: the output array's pages are faulted in ahead of the writer, never far ahead."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import pytest

from magi1 import page_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux page machinery")

MIB = 1 << 20


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_for_rss(at_least: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (rss := resident_bytes()) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    return rss


def test_prefaulting_stays_a_bounded_distance_ahead_of_the_writer(monkeypatch):
    """A frame count that was too high costs no memory beyond the window ahead of the writer."""
    monkeypatch.setattr(page_memory, "PREFAULT_AHEAD", 16 * MIB)
    monkeypatch.setattr(page_memory, "PREFAULT_STEP", 4 * MIB)
    frames = np.empty((240, MIB // 4), np.float32)  # 240 "frames" of 1 MiB, never written here
    page_memory.no_huge_pages(frames)
    before = resident_bytes()
    prefaulter = page_memory.Prefaulter.start_for(frames, len(frames))
    try:
        rss = wait_for_rss(before + 12 * MIB)
        if rss < before + 12 * MIB:
            pytest.skip("this kernel has no MADV_POPULATE_WRITE (Linux < 5.14)")
        time.sleep(0.2)  # room to run further ahead, if it would
        first_window = resident_bytes()
        assert first_window - before <= 16 * MIB + 8 * MIB
        # the writer moved on (it faults its own pages): the window moves with it, nothing behind
        prefaulter.writer_at = 100
        assert wait_for_rss(first_window + 12 * MIB) >= first_window + 12 * MIB
        time.sleep(0.2)
        assert resident_bytes() - before <= 2 * 16 * MIB + 8 * MIB
    finally:
        prefaulter.stop()


def test_released_pages_leave_the_process():
    frames = np.ones((64, MIB // 4), np.float32)  # 64 MiB, every page written
    before = resident_bytes()
    page_memory.release(frames[16:])
    assert before - resident_bytes() >= 40 * MIB
    assert not frames[17:-1].any()  # they read as zeros afterwards (whole pages only: not the ends)
    assert frames[:16].all()


def test_available_memory_is_known_on_linux():
    available = page_memory.available_bytes()
    assert available is not None and available > 0


def peak_resident_since_reset() -> tuple[int, Callable[[], int]]:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # the peak (VmHWM) starts again from the current RSS

    def peak() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    return resident_bytes(), peak


def test_an_over_reported_frame_count_costs_no_memory_beyond_the_window(tmp_path, monkeypatch):
    from video_clips import Clip

    from magi1 import video

    clip = Clip("plain_320x240", width=320, height=240, frames=12, options={"qp": "0"}).make(tmp_path)
    real = video.probe(clip)
    over = 4000  # 4000 × 0.9 MiB of float32 frames reported, 12 there
    monkeypatch.setattr(video, "probe", lambda path: video.VideoInfo(real.width, real.height, real.fps, over))
    before, peak = peak_resident_since_reset()
    # a slow consumer (0.03 s a frame) gives the pre-faulting thread every chance to run ahead
    frames = video.decode([clip], on_progress=lambda done, expected: time.sleep(0.03)).frames
    assert len(frames) == 12
    assert peak() - before <= 384 * MIB  # the 256 MiB window and change, not the 3.5 GiB reported
