"""Magi1Submit's inputs are checked before anything is uploaded or billed."""
import pytest

from magi1.errors import InputError
from magi1.params import build_request, parse_task_ids, parse_video_sources


def test_a_minimal_request_sends_prompt_seed_and_safety_checker_only():
    request = build_request("a cat jumps", 7)
    assert request.payload() == {"prompt": "a cat jumps", "seed": 7, "enable_safety_checker": True}


def test_options_left_at_default_are_not_sent_and_set_ones_are():
    request = build_request("waves", -1, "480p", "16:9", 120, 30, False)
    assert request.payload("https://x/img.png") == {
        "prompt": "waves", "seed": -1, "image": "https://x/img.png", "resolution": "480p",
        "aspect_ratio": "16:9", "num_frames": 120, "frames_per_second": 30, "enable_safety_checker": False,
    }


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", None])
def test_a_blank_prompt_is_refused(prompt):
    with pytest.raises(InputError, match="prompt is empty"):
        build_request(prompt, 0)


@pytest.mark.parametrize("seed", [-2, 2147483648, 1.5, "3", True])
def test_a_seed_outside_the_service_range_is_refused(seed):
    with pytest.raises(InputError, match="seed"):
        build_request("x", seed)


@pytest.mark.parametrize("seed", [-1, 0, 2147483647])
def test_seed_bounds_are_accepted(seed):
    assert build_request("x", seed).seed == seed


@pytest.mark.parametrize("frames", [1, 95, 193])
def test_num_frames_outside_96_to_192_is_refused(frames):
    with pytest.raises(InputError, match="num_frames"):
        build_request("x", 0, num_frames=frames)


@pytest.mark.parametrize("fps", [4, 31])
def test_frames_per_second_outside_5_to_30_is_refused(fps):
    with pytest.raises(InputError, match="frames_per_second"):
        build_request("x", 0, frames_per_second=fps)


def test_unknown_combo_values_are_refused():
    with pytest.raises(InputError, match="resolution"):
        build_request("x", 0, resolution="1080p")
    with pytest.raises(InputError, match="aspect_ratio"):
        build_request("x", 0, aspect_ratio="4:3")


def test_task_ids_are_read_one_per_line_ignoring_blanks_and_commas():
    assert parse_task_ids("abc123\n\n  def456 , ghi789\n") == ["abc123", "def456", "ghi789"]


def test_something_that_is_not_a_task_id_is_refused():
    with pytest.raises(InputError, match="task id"):
        parse_task_ids("https://example.com/x")


def test_video_sources_are_one_per_line():
    assert parse_video_sources(" a.mp4 \n\nhttps://x/b.mp4\n") == ["a.mp4", "https://x/b.mp4"]
