"""The whole recipe without ComfyUI: first frame → upload → submit → wait → save → decode,
over real HTTP against the emulator, with the ledger on disk."""
import asyncio
import logging
import time
from datetime import datetime

import cv2
import numpy as np
import pytest

from magi1 import media, pipeline
from magi1.errors import DownloadError, TaskFailedError, TaskTimeoutError
from magi1.params import build_request
from recipe_support import Cancelled, make_ctx, run, submits


@pytest.fixture
def ctx(emulator_env, tmp_path):
    return make_ctx(tmp_path)


def restarted(ctx):
    """The same directories seen by a freshly started ComfyUI (new ledger object, same file)."""
    pipeline._ledgers.clear()
    return pipeline.Context(output_dir=ctx.output_dir, private_dir=ctx.private_dir,
                            throw_if_interrupted=ctx.throw_if_interrupted)


def first_frames(batch=1, height=240, width=320, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((batch, height, width, 3), dtype=np.float32)


def test_image_to_video_end_to_end_saves_the_mp4_and_decodes_it(ctx, emulator):
    image = first_frames()
    task = run(pipeline.submit(ctx, build_request("a paper boat", 11, resolution="480p"), image))
    assert len(task.task_ids) == 1 and task.reused == (False,)
    [(url, path)] = run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=60, interval_s=0.2))
    assert path == ctx.video_dir / f"magi1_{task.task_ids[0]}.mp4" and path.stat().st_size > 0
    paths, decoded = run(pipeline.load_videos(ctx, [url]))
    assert paths == [path] and decoded.frames.shape[0] == 96 and decoded.frames.dtype == np.float32


def test_the_uploaded_png_is_pixel_exact_to_the_image_given(ctx, emulator):
    image = first_frames(seed=4) * 1.2 - 0.1  # values outside 0…1 are clamped, as documented
    run(pipeline.submit(ctx, build_request("x", 1), image))
    [upload] = emulator.uploads.values()
    sent = cv2.cvtColor(cv2.imdecode(np.frombuffer(upload.data, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    assert np.array_equal(sent, media.to_uint8(image[0]))


def test_a_batch_of_three_images_is_three_tasks_in_order(ctx, emulator):
    images = first_frames(batch=3)
    task = run(pipeline.submit(ctx, build_request("x", -1), images))
    assert len(task.task_ids) == 3 and len(set(task.task_ids)) == 3
    assert len(submits(emulator)) == 3 and len(emulator.uploads) == 3
    by_id = {t["id"]: t for t in emulator.tasks()}
    uploaded = [by_id[t]["request"]["image"] for t in task.task_ids]
    for image, url in zip(images, uploaded, strict=True):
        pixels = cv2.imdecode(np.frombuffer(emulator.uploaded_bytes(url), np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB), media.to_uint8(image))


def test_text_to_video_sends_no_image(ctx, emulator):
    task = run(pipeline.submit(ctx, build_request("a storm over the sea", 2), None))
    assert len(task.task_ids) == 1 and emulator.uploads == {}
    assert "image" not in submits(emulator)[0].get("json_body", {})


def test_a_fixed_seed_with_identical_inputs_reuses_the_task_even_after_a_restart(ctx, emulator):
    image = first_frames()
    first = run(pipeline.submit(ctx, build_request("same", 5), image))
    again = run(pipeline.submit(restarted(ctx), build_request("same", 5), image.copy()))
    assert again.task_ids == first.task_ids and again.reused == (True,)
    assert len(submits(emulator)) == 1 and len(emulator.uploads) == 1


def test_seed_minus_one_always_submits(ctx, emulator):
    image = first_frames()
    run(pipeline.submit(ctx, build_request("same", -1), image))
    run(pipeline.submit(ctx, build_request("same", -1), image))
    assert len(submits(emulator)) == 2


@pytest.mark.parametrize("change", ["prompt", "seed", "pixel", "option"])
def test_any_changed_input_submits_anew(ctx, emulator, change):
    image = first_frames()
    run(pipeline.submit(ctx, build_request("same", 5), image))
    other = image.copy()
    request = build_request("same", 5)
    if change == "prompt":
        request = build_request("different", 5)
    elif change == "seed":
        request = build_request("same", 6)
    elif change == "pixel":
        other[0, 0, 0, 0] = 1.0 - other[0, 0, 0, 0]
    else:
        request = build_request("same", 5, resolution="480p")
    run(pipeline.submit(ctx, request, other))
    assert len(submits(emulator)) == 2


def test_a_failed_task_is_not_reused_and_its_error_names_the_task(ctx, emulator):
    emulator.add_fault("submit", "fail_task", error="execution failed on the GPU", code=1403)
    task = run(pipeline.submit(ctx, build_request("x", 5), None))
    with pytest.raises(TaskFailedError) as caught:
        run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.2))
    assert task.task_ids[0] in str(caught.value) and "execution failed on the GPU" in str(caught.value)
    again = run(pipeline.submit(ctx, build_request("x", 5), None))
    assert again.task_ids != task.task_ids


@pytest.mark.parametrize("status", ["cancelled", "timeout", "deleted"])
def test_other_final_states_are_failures_too(ctx, emulator, status):
    emulator.add_fault("submit", "final_status", status=status)
    task = run(pipeline.submit(ctx, build_request("x", 1), None))
    with pytest.raises(TaskFailedError, match=status):
        run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.2))


def test_a_task_that_never_completes_times_out_naming_its_id(ctx, emulator):
    emulator.add_fault("submit", "never_complete")
    task = run(pipeline.submit(ctx, build_request("x", 1), None))
    with pytest.raises(TaskTimeoutError) as caught:
        run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=1.0, interval_s=0.2))
    assert task.task_ids[0] in str(caught.value) and "task_id" in str(caught.value)
    assert caught.value.task_ids == list(task.task_ids)


def test_a_task_is_collected_by_id_after_a_restart_even_if_never_recorded(ctx, emulator):
    from magi1.client import WaveSpeedClient
    from magi1.config import ApiKey

    foreign = WaveSpeedClient(emulator.base_url, ApiKey(emulator.api_key, "test")).submit({"prompt": "elsewhere"})
    [(url, path)] = run(pipeline.wait_and_save(restarted(ctx), [foreign.id], timeout_s=30, interval_s=0.2))
    assert path.is_file() and url.endswith(".mp4")


def test_a_saved_video_is_neither_polled_nor_downloaded_again(ctx, emulator):
    task = run(pipeline.submit(ctx, build_request("x", 1), None))
    [(url, path)] = run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.2))
    before = len(emulator.journal())
    again = run(pipeline.wait_and_save(restarted(ctx), task.task_ids, timeout_s=30, interval_s=0.2))
    paths, _ = run(pipeline.load_videos(restarted(ctx), [url]))
    assert again == [(url, path)] and paths == [path]
    assert len(emulator.journal()) == before


def test_polling_costs_at_most_duration_over_interval_plus_two_requests(ctx, emulator):
    emulator.set_latency(2.0)
    task = run(pipeline.submit(ctx, build_request("x", 1), None))
    run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.5))
    journal = emulator.journal()
    polls = [e for e in journal if e["route"] == "result"]
    # T is the task's duration as the service saw it (submit → the poll that saw it completed): on
    # a loaded machine it runs past the emulator's 2 s latency, and the bound grows with it.
    submitted = next(e for e in journal if e["route"] == "submit")
    duration_s = (_journal_time(polls[-1]) - _journal_time(submitted)).total_seconds()
    assert len(polls) <= duration_s / 0.5 + 2


def _journal_time(entry: dict) -> datetime:
    return datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))


def test_a_truncated_download_is_retried_and_leaves_no_partial_file(ctx, emulator):
    emulator.add_fault("output", "truncate")
    task = run(pipeline.submit(ctx, build_request("x", 1), None))
    [(_, path)] = run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.2))
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [path.name]
    assert len([e for e in emulator.journal() if e["route"] == "output"]) == 2


def test_an_invalid_mp4_is_refused_and_nothing_is_kept(ctx, emulator):
    emulator.add_fault("output", "invalid_mp4", count=5)
    task = run(pipeline.submit(ctx, build_request("x", 1), None))
    with pytest.raises(DownloadError, match="not an MP4"):
        run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.2))
    assert not any(ctx.video_dir.iterdir())


def test_cancel_ends_the_wait_within_about_a_second(ctx, emulator):
    emulator.add_fault("submit", "never_complete")
    task = run(pipeline.submit(ctx, build_request("x", 1), None))
    ctx.cancel.press_after(1.0)
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=60, interval_s=5.0))
    assert time.monotonic() - started < 1.0 + 1.0


def test_cancel_during_a_slow_upload_submits_nothing(ctx, emulator):
    emulator.add_fault("upload", "delay", seconds=1.5)
    ctx.cancel.press_after(0.3)
    with pytest.raises(Cancelled):
        run(pipeline.submit(ctx, build_request("x", 1), first_frames()))
    time.sleep(1.6)  # let the upload thread finish: it must stop before the billed POST
    assert submits(emulator) == []


def test_several_tasks_wait_at_the_same_time(ctx, emulator):
    emulator.set_latency(2.0)

    async def two_branches():
        a = await pipeline.submit(ctx, build_request("a", -1), None)
        b = await pipeline.submit(ctx, build_request("b", -1), None)
        return await asyncio.gather(
            pipeline.wait_and_save(ctx, a.task_ids, timeout_s=30, interval_s=0.2),
            pipeline.wait_and_save(ctx, b.task_ids, timeout_s=30, interval_s=0.2),
        )

    run(two_branches())
    polls = [e["path"] for e in emulator.journal() if e["route"] == "result"]
    a, b = dict.fromkeys(p.split("/")[-2] for p in polls)
    # b was polled before a's last poll: the two waits overlapped instead of running one after the other
    assert polls.index(next(p for p in polls if b in p)) < max(i for i, p in enumerate(polls) if a in p)


def test_nothing_the_pack_logs_contains_the_key(ctx, emulator, caplog):
    caplog.set_level(logging.DEBUG)
    task = run(pipeline.submit(ctx, build_request("x", 1), first_frames()))
    run(pipeline.wait_and_save(ctx, task.task_ids, timeout_s=30, interval_s=0.2))
    assert caplog.records and emulator.api_key not in caplog.text
