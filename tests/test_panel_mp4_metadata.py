"""A saved MP4 says where it came from: prompt, seed, task id, model and service in its container
metadata, added by a stream copy (every packet byte-identical to the downloaded file)."""
import asyncio
import shutil

import av
import pytest
import requests

from magi1 import mp4_metadata, pipeline
from magi1.params import build_request


@pytest.fixture
def ctx(emulator_env, tmp_path):
    return pipeline.Context(output_dir=tmp_path / "output", private_dir=tmp_path / "private")


def packets(path):
    """(stream index, pts, dts, bytes) of every packet, in file order."""
    with av.open(str(path)) as container:
        return [(p.stream.index, p.pts, p.dts, bytes(p)) for p in container.demux() if p.dts is not None]


def saved_task(ctx, prompt="a lighthouse at dusk", seed=42):
    task = asyncio.run(pipeline.submit(ctx, build_request(prompt, seed, resolution="480p"), None))
    [(url, path)] = asyncio.run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=60, interval_s=0.2))
    return task.task_ids[0], url, path


def test_a_saved_mp4_carries_prompt_seed_task_id_model_and_service(ctx, emulator):
    task_id, _, path = saved_task(ctx)
    tags = mp4_metadata.read_tags(path)
    assert tags["magi1_task_id"] == task_id
    assert tags["magi1_prompt"] == "a lighthouse at dusk" and tags["title"] == "a lighthouse at dusk"
    assert tags["magi1_seed"] == "42"
    assert tags["magi1_model"] == "wavespeed-ai/magi-1-24b"
    assert tags["magi1_service"] == emulator.base_url
    assert task_id in tags["comment"] and "seed 42" in tags["comment"]


def test_tagging_copies_every_packet_byte_for_byte(ctx, emulator):
    _, url, path = saved_task(ctx, seed=7)
    downloaded = ctx.output_dir / "as_downloaded.mp4"
    downloaded.write_bytes(requests.get(url, timeout=30).content)
    assert packets(path) == packets(downloaded)
    assert "magi1_task_id" not in mp4_metadata.read_tags(downloaded)


def test_tagging_an_already_tagged_file_leaves_it_alone(ctx, emulator):
    task_id, _, path = saved_task(ctx, seed=8)
    before = path.read_bytes()
    record = ctx.ledger.get(task_id)
    assert mp4_metadata.tag_saved_video(path, record) is False
    assert path.read_bytes() == before


def test_a_file_that_cannot_be_remuxed_is_kept_as_it_was(tmp_path):
    broken = tmp_path / "magi1_broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)
    assert mp4_metadata.write_tags(broken, {"magi1_task_id": "x"}) is False
    assert broken.read_bytes() == b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64
    assert [p.name for p in tmp_path.iterdir()] == ["magi1_broken.mp4"]  # no temp file left


def test_other_metadata_of_the_file_is_kept(ctx, emulator, tmp_path):
    _, _, path = saved_task(ctx, seed=9)
    copy = tmp_path / "copy.mp4"
    shutil.copy(path, copy)
    assert mp4_metadata.write_tags(copy, {"magi1_note": "second"}) is True
    tags = mp4_metadata.read_tags(copy)
    assert tags["magi1_note"] == "second" and tags["magi1_prompt"] == "a lighthouse at dusk"


def test_a_url_of_no_known_task_is_not_tagged(ctx, emulator, tmp_path):
    _, url, path = saved_task(ctx, seed=10)
    plain = tmp_path / "plain.mp4"
    plain.write_bytes(requests.get(url, timeout=30).content)
    assert mp4_metadata.tag_saved_video(plain, None) is False
    assert "magi1_task_id" not in mp4_metadata.read_tags(plain)


def test_the_tags_survive_comfyui_s_save_video(comfyui):
    """Magi1LoadVideo's VIDEO → core SaveVideo remuxes the clip and keeps its metadata."""
    comfyui.emulator.reset()
    comfyui.server.clear_cache()
    graph = {
        "submit": {"class_type": "Magi1Submit", "inputs": {"prompt": "a tagged clip", "seed": 31337,
                                                            "resolution": "480p"}},
        "poll": {"class_type": "Magi1Poll", "inputs": {"task": ["submit", 0], "poll_interval_s": 0.2}},
        "load": {"class_type": "Magi1LoadVideo", "inputs": {"video_url": ["poll", 0]}},
        "save": {"class_type": "SaveVideo", "inputs": {"video": ["load", 4], "filename_prefix": "tagged/clip",
                                                        "format": "auto", "codec": "auto"}},
    }
    comfyui.server.run(graph, timeout=120)
    [saved] = (comfyui.server.output_dir / "tagged").glob("clip*.mp4")
    tags = mp4_metadata.read_tags(saved)
    assert tags["magi1_prompt"] == "a tagged clip" and tags["magi1_seed"] == "31337"
    assert tags["magi1_task_id"] and "prompt" in tags  # ComfyUI's own graph sits beside ours
