"""magi1.video: MP4 files → one float32 [N,H,W,3] RGB array, with skip / nth / cap per video."""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from magi1 import video
from magi1.errors import InputError, VideoDecodeError

WIDTH, HEIGHT, FPS = 96, 64, 12


def write_mp4(path: Path, frames: int, *, width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> Path:
    """A real MP4 (OpenCV's mp4v) whose frames all differ: texture plus a moving bright square."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8), (0, 0), 2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    assert writer.isOpened()
    for index in range(frames):
        frame = np.ascontiguousarray(texture[:, index % width: index % width + width])
        cv2.rectangle(frame, (index * 3 % width, 8), (index * 3 % width + 12, 20), (40, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def straightforward(path: Path) -> np.ndarray:
    """The reference decoder: a list of cv2 frames, BGR→RGB, / 255."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / 255)
    capture.release()
    return np.stack(frames)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("video") / "clip.mp4", 30)


@pytest.fixture(scope="module")
def reference(clip) -> np.ndarray:
    return straightforward(clip)


# --- what comes out ----------------------------------------------------------------------------------
def test_frames_equal_the_straightforward_decoder_within_1_255(clip, reference):
    decoded = video.decode([clip])
    assert decoded.frames.shape == reference.shape
    assert np.abs(decoded.frames - reference).max() <= 1 / 255


def test_frame_count_size_and_fps_are_reported(clip):
    info = video.probe(clip)
    decoded = video.decode([clip])
    assert (info.width, info.height, info.frame_count) == (WIDTH, HEIGHT, 30)
    assert info.fps == pytest.approx(FPS)
    assert decoded.frames.shape == (30, HEIGHT, WIDTH, 3)
    assert decoded.fps == pytest.approx(FPS)
    assert decoded.counts == [30]


def test_result_is_c_contiguous_float32_that_torch_wraps_without_copying(clip):
    torch = pytest.importorskip("torch")
    frames = video.decode([clip]).frames
    assert frames.dtype == np.float32 and frames.flags.c_contiguous
    tensor = torch.from_numpy(frames)
    assert tensor.shape == (30, HEIGHT, WIDTH, 3) and tensor.dtype == torch.float32
    assert tensor.data_ptr() == frames.ctypes.data
    assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0


# --- skip / nth / cap -------------------------------------------------------------------------------
def test_skip_first_frames_drops_the_first_k(clip, reference):
    frames = video.decode([clip], skip_first_frames=7).frames
    assert np.array_equal(frames, reference[7:])


def test_select_every_nth_keeps_every_nth_frame(clip, reference):
    frames = video.decode([clip], select_every_nth=4).frames
    assert np.array_equal(frames, reference[::4])


def test_frame_load_cap_stops_after_that_many_frames(clip, reference):
    frames = video.decode([clip], frame_load_cap=5).frames
    assert np.array_equal(frames, reference[:5])


def test_skip_then_every_nth_then_cap(clip, reference):
    decoded = video.decode([clip], frame_load_cap=4, skip_first_frames=3, select_every_nth=5)
    assert np.array_equal(decoded.frames, reference[3::5][:4])
    assert decoded.counts == [4]


def test_a_cap_larger_than_the_video_returns_every_frame(clip, reference):
    assert np.array_equal(video.decode([clip], frame_load_cap=1000).frames, reference)


@pytest.mark.parametrize("options", [{"frame_load_cap": -1}, {"skip_first_frames": -1}, {"select_every_nth": 0}])
def test_invalid_options_are_refused(clip, options):
    with pytest.raises(InputError):
        video.decode([clip], **options)


def test_selecting_no_frames_is_an_error_that_explains_the_options(clip):
    with pytest.raises(VideoDecodeError, match="skip_first_frames=30"):
        video.decode([clip], skip_first_frames=30)


# --- several videos -------------------------------------------------------------------------------------
def test_several_videos_are_concatenated_in_order_with_their_counts(tmp_path):
    first = write_mp4(tmp_path / "first.mp4", 10, seed=1)
    second = write_mp4(tmp_path / "second.mp4", 14, seed=2)
    decoded = video.decode([first, second, first])
    assert decoded.counts == [10, 14, 10]
    expected = np.concatenate([straightforward(first), straightforward(second), straightforward(first)])
    assert np.array_equal(decoded.frames, expected)


def test_options_apply_to_each_video(tmp_path):
    first = write_mp4(tmp_path / "first.mp4", 10, seed=1)
    second = write_mp4(tmp_path / "second.mp4", 14, seed=2)
    decoded = video.decode([first, second], frame_load_cap=3, skip_first_frames=2, select_every_nth=2)
    assert decoded.counts == [3, 3]
    expected = np.concatenate([straightforward(first)[2::2][:3], straightforward(second)[2::2][:3]])
    assert np.array_equal(decoded.frames, expected)


def test_videos_of_different_sizes_are_refused_naming_both(tmp_path):
    small = write_mp4(tmp_path / "small.mp4", 5)
    large = write_mp4(tmp_path / "large.mp4", 5, width=128, height=96)
    with pytest.raises(VideoDecodeError, match=r"small\.mp4.*large\.mp4"):
        video.decode([small, large])


# --- files that are not videos ---------------------------------------------------------------------------
def test_a_file_that_is_not_a_video_is_refused_naming_it(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"<html>not a video</html>" * 100)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        video.decode([broken])


def test_a_missing_file_is_refused_naming_it(tmp_path):
    with pytest.raises(VideoDecodeError, match="missing.mp4"):
        video.probe(tmp_path / "missing.mp4")


# --- containers whose frame count is wrong ------------------------------------------------------------------
def test_frames_beyond_an_under_reported_count_are_kept(clip, reference, monkeypatch):
    monkeypatch.setattr(video, "probe", lambda path: video.VideoInfo(WIDTH, HEIGHT, FPS, frame_count=2))
    assert np.array_equal(video.decode([clip]).frames, reference)


def test_an_over_reported_count_returns_only_the_real_frames(clip, reference, monkeypatch):
    monkeypatch.setattr(video, "probe", lambda path: video.VideoInfo(WIDTH, HEIGHT, FPS, frame_count=500))
    assert np.array_equal(video.decode([clip]).frames, reference)


# --- progress and cancel ---------------------------------------------------------------------------------
def test_progress_is_reported_per_frame(clip):
    seen = []
    video.decode([clip], frame_load_cap=6, on_progress=lambda done, expected: seen.append((done, expected)))
    assert seen == [(n, 6) for n in range(1, 7)]


def test_an_exception_from_progress_stops_decoding_and_propagates(clip):
    class Cancelled(Exception):
        pass

    def cancel_at_third(done, expected):
        if done == 3:
            raise Cancelled

    threads_before = threading.active_count()
    with pytest.raises(Cancelled):
        video.decode([clip], on_progress=cancel_at_third)
    assert threading.active_count() == threads_before
