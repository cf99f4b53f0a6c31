"""magi1.video on generated clips whose true pixels are known, under the newest and the lowest OpenCV.

Each clip (see tests/video_clips.py) is decoded by the pack and compared with the reference
decode (PyAV to rgb24 with the stream's own matrix and range, rotated as FFmpeg does): within
2/255 on every pixel of every frame. The whole module also runs once more in a subprocess
whose `cv2` is the lowest release requirements.txt allows and whose `av` the lowest ComfyUI
0.3.75 allows (tools/opencv_floor.py), together with tests/test_video.py.
"""
from __future__ import annotations

import fractions
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import video_clips as vc
from magi1 import download, mp4_index, pipeline, video
from magi1.errors import DownloadError, VideoDecodeError

REPO = Path(__file__).resolve().parents[1]
SHARED_CASES = REPO.parent / "shared" / "cases" / "video"
UNDER_FLOOR = "MAGI1_EXPECT_OPENCV"  # set in the subprocess that runs this module under the floor

C = vc.Clip
FAST_VP9 = {"deadline": "realtime", "cpu-used": "8", "lossless": "1"}
CLIPS: dict[str, vc.Clip] = {
    # orientation: H.264 goes through OpenCV (its auto-rotation off), HEVC 10-bit through PyAV
    **{f"h264_rot{r}": C(f"h264_rot{r}", rotation=r, options={"qp": "0"}) for r in (90, 180, -90)},
    **{f"hevc10_rot{r}": C(f"hevc10_rot{r}", codec="libx265", pix_fmt="yuv420p10le", rotation=r,
                           options={"x265-params": "lossless=1:log-level=error"}) for r in (90, 180, -90)},
    # colour: the stream's own tags choose the conversion
    "h264_bt709_tv": C("h264_bt709_tv", colorspace=vc.SPC_BT709, color_range=vc.RANGE_TV, options={"qp": "0"}),
    "h264_bt709_pc": C("h264_bt709_pc", colorspace=vc.SPC_BT709, color_range=vc.RANGE_PC, options={"qp": "0"}),
    "h264_untagged": C("h264_untagged", options={"qp": "0"}),
    "h264_bt601_pc": C("h264_bt601_pc", colorspace=vc.SPC_SMPTE170M, color_range=vc.RANGE_PC, options={"qp": "0"}),
    "hevc_bt709_pc": C("hevc_bt709_pc", codec="libx265", colorspace=vc.SPC_BT709, color_range=vc.RANGE_PC,
                       options={"x265-params": "lossless=1:log-level=error"}),
    "hevc_bt601_tv": C("hevc_bt601_tv", codec="libx265", colorspace=vc.SPC_BT470BG, color_range=vc.RANGE_TV,
                       options={"x265-params": "lossless=1:log-level=error"}),
    "vp9_bt601_pc": C("vp9_bt601_pc", codec="libvpx-vp9", colorspace=vc.SPC_SMPTE170M, color_range=vc.RANGE_PC,
                      container="webm", suffix=".webm", options=FAST_VP9),
    # codecs OpenCV's FFmpeg lacks or that the pack routes to PyAV
    "av1": C("av1", codec="libsvtav1", options={"crf": "10", "preset": "12"}),
    "vp9_odd": C("vp9_odd", codec="libvpx-vp9", width=97, height=63, suffix=".webm", container="webm",
                 options=FAST_VP9),
    "h264_one_frame": C("h264_one_frame", frames=1, options={"qp": "0"}),
    "vp9_one_frame": C("vp9_one_frame", codec="libvpx-vp9", frames=1, suffix=".webm", container="webm",
                       options=FAST_VP9),
    # timing
    "vfr": C("vfr", frames=10, vfr_pts_ms=[0, 40, 60, 130, 140, 200, 330, 340, 380, 500], options={"qp": "0"}),
    "fps5994": C("fps5994", frames=30, rate=fractions.Fraction(60000, 1001), options={"qp": "0"}),
    # layout
    "audio_first": C("audio_first", audio_seconds=1.0, audio_first=True, options={"qp": "0"}),
    "fragmented": C("fragmented", audio_seconds=1.0, options={"qp": "0"},
                    container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}),
    "moov_at_end": C("moov_at_end", options={"qp": "0"}),
    "faststart": C("faststart", frames=48, options={"qp": "0"}, container_options={"movflags": "faststart"}),
    "long_audio_mp4": C("long_audio_mp4", audio_seconds=60.0, options={"qp": "0"}),
    "long_audio_frag": C("long_audio_frag", audio_seconds=60.0, options={"qp": "0"},
                         container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}),
    "long_audio_mkv": C("long_audio_mkv", audio_seconds=60.0, container="matroska", suffix=".mkv",
                        options={"qp": "0"}),
    # alpha (dropped: IMAGE is RGB; the colour channels must be right)
    "alpha_mov_qtrle": C("alpha_mov_qtrle", codec="qtrle", pix_fmt="argb", container="mov", suffix=".mov"),
    "alpha_mov_png": C("alpha_mov_png", codec="png", pix_fmt="rgba", container="mov", suffix=".mov"),
    "alpha_webm_vp9": C("alpha_webm_vp9", codec="libvpx-vp9", pix_fmt="yuva420p", container="webm",
                        suffix=".webm", options=FAST_VP9),
}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    shared = os.environ.get("MAGI1_TEST_CLIP_DIR")
    if shared:
        return Path(shared)
    return tmp_path_factory.mktemp("clips")


def make(clip_dir: Path, name: str) -> Path:
    clip = CLIPS[name]
    if not vc.encoder_available(clip.codec):
        pytest.skip(f"this PyAV build has no {clip.codec} encoder")
    return clip.make(clip_dir)


def ours(path: Path, **options) -> np.ndarray:
    """The pack's decode, as uint8-scaled integers for comparing with the reference."""
    return np.rint(video.decode([path], **options).frames * 255).astype(np.int16)


def assert_like_reference(path: Path, **options) -> np.ndarray:
    reference = vc.reference_rgb(path).astype(np.int16)
    skip, nth, cap = options.get("skip_first_frames", 0), options.get("select_every_nth", 1), \
        options.get("frame_load_cap", 0)
    expected = reference[skip::nth]
    if cap:
        expected = expected[:cap]
    got = ours(path, **options)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 2
    return got


def assert_patches(frames: np.ndarray, clip: vc.Clip, tolerance: int) -> None:
    """The drawn colour patches come back (the conversion used the stream's matrix and range)."""
    for (row, column), colour in zip(vc.patch_centres(clip.width, clip.height), vc.PATCHES, strict=True):
        assert np.abs(frames[:, row, column] - np.array(colour)).max() <= tolerance, (colour, frames[0, row, column])


# --- which OpenCV this run tests -------------------------------------------------------------------
def test_the_opencv_under_test_is_the_one_intended():
    expected = os.environ.get(UNDER_FLOOR)
    if expected:
        assert cv2.__version__ == expected
        assert vc.av.__version__ == os.environ["MAGI1_EXPECT_PYAV"]
    else:
        floor = tuple(int(p) for p in _requirement_floor().split("."))
        assert tuple(int(p) for p in cv2.__version__.split(".")[:2]) >= floor[:2]


def _requirement_floor() -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.startswith("opencv-python>="):
            return line.split(">=")[1].split(",")[0].strip()
    raise AssertionError("requirements.txt has no opencv-python floor")


@pytest.mark.timeout(900)
def test_every_clip_test_passes_under_the_lowest_opencv_allowed(clip_dir):
    if os.environ.get(UNDER_FLOOR):
        pytest.skip("this is the run under the lowest OpenCV")
    sys.path.insert(0, str(REPO))
    from tools import opencv_floor

    floor = _requirement_floor()
    assert opencv_floor.OPENCV_FLOOR == floor or opencv_floor.OPENCV_FLOOR.startswith(floor + ".")
    floor_dir = opencv_floor.ensure()
    for name in CLIPS:  # the parent makes them once (with the newest PyAV); the child reuses them
        if vc.encoder_available(CLIPS[name].codec):
            CLIPS[name].make(clip_dir)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(floor_dir), str(REPO)]),
               MAGI1_TEST_CLIP_DIR=str(clip_dir), **{UNDER_FLOOR: opencv_floor.OPENCV_FLOOR.rsplit(".", 1)[0],
                                                    "MAGI1_EXPECT_PYAV": opencv_floor.PYAV_FLOOR})
    modules = [str(Path(__file__)), str(Path(__file__).with_name("test_video.py"))]
    result = subprocess.run([sys.executable, "-m", "pytest", *modules, "-q", "-p", "no:cacheprovider",
                             "-p", "no:randomly"], cwd=REPO / "tests", env=env, capture_output=True, text=True,
                            timeout=850)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


# --- orientation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in CLIPS if "_rot" in n])
def test_a_rotated_clip_comes_out_as_players_show_it(clip_dir, name):
    path = make(clip_dir, name)
    clip = CLIPS[name]
    frames = assert_like_reference(path)
    assert frames.shape[1:3] == (clip.height, clip.width)
    # the orientation marker: white corner top-left, and the top row white, only when upright
    assert (frames[:, 0, 0] >= 240).all() and (frames[:, 0, -1] >= 240).all()
    assert (frames[:, -1, -1] < 200).any()
    assert video.probe(path).decoder == ("opencv" if name.startswith("h264") else "pyav")


# --- colour ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["h264_bt709_tv", "h264_bt709_pc", "h264_untagged", "h264_bt601_pc",
                                  "hevc_bt709_pc", "hevc_bt601_tv", "vp9_bt601_pc"])
def test_the_stream_tags_choose_the_colour_conversion(clip_dir, name):
    path = make(clip_dir, name)
    frames = assert_like_reference(path)
    assert_patches(frames, CLIPS[name], tolerance=4)


def test_untagged_h264_stays_on_opencv_and_bt709_goes_through_pyav(clip_dir):
    assert video.probe(make(clip_dir, "h264_untagged")).decoder == "opencv"
    info = video.probe(make(clip_dir, "h264_bt709_tv"))
    assert (info.decoder, info.matrix) == ("pyav", "bt709")


# --- codecs ---------------------------------------------------------------------------------------------
def test_an_av1_mp4_decodes(clip_dir):
    path = make(clip_dir, "av1")
    frames = assert_like_reference(path)
    assert len(frames) == CLIPS["av1"].frames
    assert_patches(frames, CLIPS["av1"], tolerance=12)


def test_vp9_with_odd_width_and_height_decodes(clip_dir):
    path = make(clip_dir, "vp9_odd")
    frames = assert_like_reference(path)
    assert frames.shape == (12, 63, 97, 3)


def test_a_codec_nothing_decodes_is_named_in_the_error(tmp_path, clip_dir):
    # a real MP4 whose sample entry names a codec FFmpeg has no decoder for
    path = tmp_path / "unknown_codec.mp4"
    data = bytearray(make(clip_dir, "h264_untagged").read_bytes())
    at = data.find(b"avc1", data.find(b"stsd"))
    data[at:at + 4] = b"zzzz"
    path.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match=r"unknown_codec\.mp4") as raised:
        video.decode([path])
    assert "check that" not in str(raised.value).lower()


@pytest.mark.timeout(60)
def test_many_one_frame_videos_through_both_decoders_never_stall(clip_dir):
    opencv, pyav = make(clip_dir, "h264_one_frame"), make(clip_dir, "vp9_one_frame")
    decoded = video.decode([opencv, pyav] * 4 + [pyav] * 4)
    assert decoded.counts == [1] * 12


# --- timing and frame counts ----------------------------------------------------------------------------
def test_variable_frame_rate_keeps_every_frame(clip_dir):
    path = make(clip_dir, "vfr")
    assert len(assert_like_reference(path)) == 10
    assert video.probe(path).frame_count == 10


@pytest.mark.parametrize("options", [{}, {"skip_first_frames": 3, "select_every_nth": 4, "frame_load_cap": 5},
                                     {"select_every_nth": 7}, {"frame_load_cap": 29}])
def test_59_94_fps_with_skip_nth_and_cap(clip_dir, options):
    path = make(clip_dir, "fps5994")
    assert_like_reference(path, **options)
    assert video.decode([path], frame_load_cap=1).fps == pytest.approx(60000 / 1001, rel=1e-4)


@pytest.mark.parametrize("name", ["vp9_odd", "hevc10_rot90", "h264_rot-90"])
def test_skip_nth_and_cap_on_both_decoders_and_with_rotation(clip_dir, name):
    assert_like_reference(make(clip_dir, name), skip_first_frames=2, select_every_nth=3, frame_load_cap=3)


@pytest.mark.parametrize("name", ["audio_first", "fragmented", "moov_at_end", "faststart"])
def test_stream_order_and_mp4_layout_do_not_matter(clip_dir, name):
    path = make(clip_dir, name)
    frames = assert_like_reference(path)
    assert len(frames) == CLIPS[name].frames == video.probe(path).frame_count


@pytest.mark.parametrize("name", ["long_audio_mp4", "long_audio_frag", "long_audio_mkv"])
def test_audio_longer_than_the_video_does_not_size_the_output(clip_dir, name):
    path = make(clip_dir, name)
    info = video.probe(path)
    assert info.frame_count == 12  # 0.5 s of video, not 60 s of audio
    frames = assert_like_reference(path)
    assert len(frames) == 12


def test_too_many_frames_for_memory_is_an_error_naming_frame_load_cap(clip_dir, monkeypatch):
    path = make(clip_dir, "h264_untagged")
    monkeypatch.setattr(video.page_memory, "available_bytes", lambda: 1 << 20)
    with pytest.raises(VideoDecodeError, match="frame_load_cap"):
        video.decode([path])


# --- alpha ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alpha_mov_qtrle", "alpha_mov_png", "alpha_webm_vp9"])
def test_a_clip_with_alpha_gives_its_colour_channels(clip_dir, name):
    path = make(clip_dir, name)
    frames = assert_like_reference(path)
    assert frames.shape == (12, 64, 96, 3)
    assert_patches(frames, CLIPS[name], tolerance=4)


# --- incomplete files -----------------------------------------------------------------------------------
def cut(source: Path, dest: Path, fraction: float) -> Path:
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


@pytest.mark.parametrize("name", ["faststart", "moov_at_end", "fragmented", "long_audio_mkv", "vp9_odd"])
def test_a_truncated_file_is_an_error_naming_it(clip_dir, tmp_path, name):
    suffix = CLIPS[name].suffix
    path = cut(make(clip_dir, name), tmp_path / f"cut_{name}{suffix}", 0.6)
    with pytest.raises(VideoDecodeError, match=rf"cut_{name}\{suffix} is incomplete"):
        video.decode([path])


def test_a_decode_ending_before_the_index_says_is_an_error_naming_the_file(clip_dir, tmp_path):
    # every byte the index points at is there, but the last 40 % of the samples are zeros
    data = bytearray(make(clip_dir, "faststart").read_bytes())
    data[int(len(data) * 0.6):] = bytes(len(data) - int(len(data) * 0.6))
    path = tmp_path / "zeroed_tail.mp4"
    path.write_bytes(bytes(data))
    assert mp4_index.problem(path) is None
    with pytest.raises(VideoDecodeError, match=r"zeroed_tail\.mp4 ended after \d+ of the 48 frames"):
        video.decode([path])


class _Server:
    """A loopback HTTP server for one file: whole or cut short, with or without Content-Length."""

    def __init__(self, data: bytes) -> None:
        self.data, self.cut_at, self.content_length = data, None, True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                body = server.data if server.cut_at is None else server.data[: server.cut_at]
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                if server.content_length:
                    self.send_header("Content-Length", str(len(server.data)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/result.mp4"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(clip_dir):
    served = _Server(make(clip_dir, "faststart").read_bytes())
    yield served
    served.close()


@pytest.mark.parametrize("content_length", [True, False])
def test_a_download_cut_short_is_never_saved(server, tmp_path, content_length):
    server.cut_at, server.content_length = int(len(server.data) * 0.6), content_length
    dest = tmp_path / "video.mp4"
    with pytest.raises(DownloadError, match="after 2 tries"):
        download.download_video(server.url, dest, attempts=2, sleep=lambda seconds: None)
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_a_whole_download_without_content_length_is_saved_and_decodes(server, tmp_path):
    server.content_length = False
    dest = download.download_video(server.url, tmp_path / "video.mp4", sleep=lambda seconds: None)
    assert dest.read_bytes() == server.data
    assert len(assert_like_reference(dest)) == 48


def test_an_incomplete_saved_copy_is_downloaded_again(server, tmp_path):
    ctx = pipeline.Context(output_dir=tmp_path / "output", private_dir=tmp_path / "private")
    first = pipeline.save_video(ctx, server.url)
    first.write_bytes(server.data[: len(server.data) * 6 // 10])  # as an older version saved it
    assert not download.mp4_index_and_samples_present(first)
    again = pipeline.save_video(ctx, server.url)
    assert again == first and again.read_bytes() == server.data


# --- the shared cases (real files users reported, with the right answers) ---------------------------
SHARED = [("c01_rotated.mp4", (24, 320, 240)), ("c07a_bt709_tv.mp4", None), ("c06_av1.mp4", (24, 240, 320)),
          ("c03_longaudio_frag.mp4", (48, 720, 1280)), ("c10_full.mp4", (96, 240, 320))]


@pytest.mark.parametrize(("name", "shape"), SHARED)
def test_the_shared_cases_decode_like_a_player(name, shape, tmp_path):
    if not SHARED_CASES.is_dir():
        pytest.skip(f"{SHARED_CASES} is not beside this clone")
    path = shutil.copy(SHARED_CASES / name, tmp_path / name)
    frames = assert_like_reference(Path(path))
    if shape is not None:
        assert frames.shape[:3] == shape
    else:
        assert_green = frames[:, :, :, 1].max() >= 190  # a green patch (20,200,40) exists...
        assert assert_green
        assert not (np.abs(frames - np.array([33, 229, 45])).max(axis=-1) <= 2).any()  # ...never as BT.601 read it


def test_the_shared_truncated_case_is_an_error_naming_it():
    if not SHARED_CASES.is_dir():
        pytest.skip(f"{SHARED_CASES} is not beside this clone")
    with pytest.raises(VideoDecodeError, match=r"c10_truncated\.mp4 is incomplete"):
        video.decode([SHARED_CASES / "c10_truncated.mp4"])


# --- the MP4 index reader ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["faststart", "moov_at_end"])
def test_a_whole_mp4_cut_anywhere_is_found_incomplete(clip_dir, name):
    data = make(clip_dir, name).read_bytes()
    folder = clip_dir / f"cuts_{name}_{os.getpid()}"
    folder.mkdir(exist_ok=True)
    path = folder / "cut.mp4"
    path.write_bytes(data)
    assert mp4_index.problem(path) is None
    for end in [*range(8, len(data), 11), len(data) - 1]:
        path.write_bytes(data[:end])
        assert mp4_index.problem(path) is not None, end


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_damaged_bytes_never_crash_the_index_reader(clip_dir, tmp_path, damage):
    data = bytearray(make(clip_dir, "faststart").read_bytes())
    for at, value in damage:
        data[at % len(data)] = value
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    problem = mp4_index.problem(path)
    assert problem is None or isinstance(problem, str)


def test_a_pyav_clip_whose_samples_are_zeros_is_an_error_naming_file_and_codec(clip_dir, tmp_path):
    data = bytearray(make(clip_dir, "av1").read_bytes())
    index = mp4_index.read(make(clip_dir, "av1"))
    mdat = data.find(b"mdat")
    data[mdat + 4:index.video_track().data_end] = bytes(index.video_track().data_end - mdat - 4)
    path = tmp_path / "zeroed_av1.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match=r"zeroed_av1\.mp4.*av1") as raised:
        video.decode([path])
    assert "check that" not in str(raised.value).lower()
