"""The three MAGI-1 nodes, in ComfyUI's V3 node schema (`io.ComfyNode`, reached through
magi1.comfy_glue, the one module importing ComfyUI). Thin: each reads its inputs, calls the recipe
in magi1.pipeline, and turns the result into ComfyUI values.

The V1 contract is kept exactly: node ids, input names, types, defaults and order, outputs (plus
Magi1Poll's `video`, added after `video_url`); tests/test_versions.py compares /object_info with
the V1 nodes' (tests/fixtures/v1_object_info.json) on both ComfyUI versions. These classes exist
only inside ComfyUI (outside it `glue.io` is None).
"""
from __future__ import annotations

import logging
import time

import torch

from ..magi1 import comfy_glue as glue
from ..magi1 import params, pipeline
from ..magi1.errors import InputError
from ..magi1.poller import WaitSnapshot

io = glue.io
log = logging.getLogger(__name__)

CATEGORY = "WaveSpeed/MAGI-1"
TASK_TYPE = "MAGI1_TASK"
PROGRESS_STEPS = 1000
Task = io.Custom(TASK_TYPE)


def _context() -> pipeline.Context:
    return pipeline.Context(
        output_dir=glue.output_directory(),
        private_dir=glue.private_directory(),
        throw_if_interrupted=glue.throw_if_interrupted,
        run_id=glue.current_prompt_id(),
        on_submit_status=glue.node_status_sender(),
    )


class Magi1Submit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Magi1Submit",
            display_name="MAGI-1 Submit (WaveSpeed)",
            category=CATEGORY,
            description=(
                "Submits a MAGI-1 24B text/image-to-video task to WaveSpeed (billed per task). Optionally "
                "uploads an IMAGE as the first frame; a batch of B images submits B tasks. A fixed seed with "
                "identical inputs reuses the earlier task instead of paying again."
            ),
            inputs=[
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="What happens in the video: subject, motion, camera. Required."),
                io.Int.Input("seed", default=0, min=params.SEED_MIN, max=params.SEED_MAX,
                             control_after_generate=True,  # web/magi1.js starts it on "fixed"
                             tooltip="-1 lets the service pick (and always submits a new, billed task). "
                                     "A fixed seed with unchanged inputs reuses the earlier task: not billed twice."),
                io.Image.Input("image", optional=True,
                               tooltip="First frame(s). Resized and center-cropped by the service to the aspect "
                                       "ratio. A batch of B images submits B tasks."),
                io.Combo.Input("resolution", options=list(params.RESOLUTIONS), default="default", optional=True,
                               tooltip="480p costs about half of 720p. 'default' lets the service decide."),
                io.Combo.Input("aspect_ratio", options=list(params.ASPECT_RATIOS), default="default",
                               optional=True, tooltip="'auto' follows the first frame. 'default' sends nothing."),
                io.Int.Input("num_frames", default=0, min=0, max=params.NUM_FRAMES_MAX, optional=True,
                             tooltip=f"0 = the service's default ({params.DEFAULT_NUM_FRAMES}); "
                                     f"else {params.NUM_FRAMES_MIN}…{params.NUM_FRAMES_MAX}."),
                io.Int.Input("frames_per_second", default=0, min=0, max=params.FPS_MAX, optional=True,
                             tooltip=f"0 = the service's default ({params.DEFAULT_FPS}); "
                                     f"else {params.FPS_MIN}…{params.FPS_MAX}."),
                io.Boolean.Input("enable_safety_checker", default=True, optional=True,
                                 tooltip="The service's content safety check."),
            ],
            outputs=[
                Task.Output("task", display_name="task",
                            tooltip="The submitted task(s); connect to Magi1Poll."),
                io.String.Output("task_id", display_name="task_id",
                                 tooltip="The task id(s), one per line: paste into Magi1Poll's task_id "
                                         "to collect them later."),
            ],
        )

    @classmethod
    def validate_inputs(cls, prompt=None, seed=None):
        """At queue time (POST /prompt), before anything runs or is billed: a blank or too long
        prompt, or a seed outside -1…SEED_MAX, is refused with the message the node would raise.
        Only values typed into the node are seen (a linked prompt is checked when the node runs);
        naming `seed` here also turns off ComfyUI's own min/max check, so the range is checked here."""
        try:
            params.build_request("x" if prompt is None else prompt, 0 if seed is None else seed)
        except InputError as exc:
            return str(exc)
        return True

    @classmethod
    def fingerprint_inputs(cls, seed=0, **_):
        # Seed -1 means "a new video every time": never serve it from ComfyUI's cache. A fresh NaN
        # object each call: it equals nothing, not even an earlier NaN (math.nan would be identical).
        # A fixed seed is cached until a task of this process fails: a failed fixed-seed result is
        # never served again from ComfyUI's cache (the ledger then reuses what still stands, or
        # submits afresh), as the failure's "queue again" promises.
        return float("nan") if seed == -1 else (seed, pipeline.failure_generation())

    @classmethod
    async def execute(cls, prompt, seed, image=None, resolution="default", aspect_ratio="default",
                      num_frames=0, frames_per_second=0, enable_safety_checker=True):
        request = params.build_request(prompt, seed, resolution, aspect_ratio, num_frames,
                                       frames_per_second, enable_safety_checker)
        first_frames = image.detach().cpu().float().numpy() if image is not None else None
        task = await pipeline.submit(_context(), request, first_frames)
        return io.NodeOutput(task, "\n".join(task.task_ids))


class Magi1Poll(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Magi1Poll",
            display_name="MAGI-1 Wait for Video (WaveSpeed)",
            category=CATEGORY,
            description=(
                "Waits for MAGI-1 task(s) with progress and status on the node, then saves each MP4 under "
                "ComfyUI's output folder (magi1/) at once, so a paid result is never lost. Cancel stops the "
                "wait within a second; the task keeps running on WaveSpeed and can be collected by id."
            ),
            # It saves the paid MP4, so a graph may end here; and its preview is re-sent.
            is_output_node=True,
            inputs=[
                Task.Input("task", optional=True, tooltip="From Magi1Submit."),
                io.String.Input("task_id", default="", multiline=False, optional=True,
                                tooltip="Collect task(s) by id (one per line) when no task is connected, e.g. "
                                        "after a restart or a timeout."),
                io.Int.Input("timeout_s", default=1800, min=10, max=24 * 3600, optional=True,
                             tooltip="Stop waiting after this many seconds (the task keeps running and can be "
                                     "collected later by id)."),
                io.Float.Input("poll_interval_s", default=5.0, min=0.2, max=120.0, step=0.1, optional=True,
                               tooltip="Seconds between status checks. WaveSpeed asks for 5 s or more."),
            ],
            outputs=[
                io.String.Output("video_url", display_name="video_url",
                                 tooltip="The video URL(s), one per line; the saved copies are used by "
                                         "Magi1LoadVideo."),
                io.Video.Output("video", display_name="video",
                                tooltip="The saved MP4 as a VIDEO, for SaveVideo and other video nodes. For a "
                                        "batch: the first task's video (Magi1LoadVideo joins them all)."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    async def execute(cls, task=None, task_id="", timeout_s=1800, poll_interval_s=5.0):
        task_ids = list(task.task_ids) if task is not None else params.parse_task_ids(task_id)
        ctx = _context()
        progress = glue.NodeProgress(cls.hidden.unique_id, PROGRESS_STEPS)

        notices: list[str] = []  # the latest NSFW notice, kept for the final text

        def show(snapshot: WaitSnapshot) -> None:
            ctx.check_cancel()  # first, so a Cancel is remembered for this run's worker threads
            notices[:] = [n for n in (snapshot.nsfw_notice(),) if n]
            progress.update(int(snapshot.fraction() * PROGRESS_STEPS), status_text(snapshot))

        started = time.monotonic()
        saved = await pipeline.wait_and_save(
            ctx, task_ids, timeout_s=timeout_s, interval_s=max(float(poll_interval_s), 0.2), on_update=show
        )
        count = f"{len(saved)} video{'s' if len(saved) != 1 else ''}"
        progress.update(PROGRESS_STEPS, "\n".join(
            [f"done · {count} saved · {time.monotonic() - started:.0f} s", *notices]))
        paths = [path for _, path in saved]
        # A batch's VIDEO is its first task's MP4: one file, no decode (README, Magi1Poll outputs).
        video = glue.video_from_file(paths[0]) if paths else None
        return io.NodeOutput("\n".join(url for url, _ in saved), video, ui=glue.preview_video(paths))


def status_text(snapshot: WaitSnapshot) -> str:
    """One or two short lines for the node: status, elapsed, estimate, ids."""
    statuses = [snapshot.statuses.get(t, "?") for t in snapshot.task_ids]
    if snapshot.total == 1:
        head = statuses[0]
    else:
        head = f"{snapshot.done}/{snapshot.total} completed"
    line = f"{head} · {snapshot.elapsed_s:.0f} s"
    remaining = snapshot.estimated_remaining_s()
    if remaining:
        line += f" · ~{remaining:.0f} s left"
    ids = ", ".join(snapshot.task_ids[:3]) + (" …" if snapshot.total > 3 else "")
    notice = snapshot.nsfw_notice()
    return f"{line}\ntask {ids}" + (f"\n{notice}" if notice else "")


class Magi1LoadVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Magi1LoadVideo",
            display_name="MAGI-1 Load Video",
            category=CATEGORY,
            description=(
                "Loads MAGI-1 video(s) as IMAGE frames: uses the copy Magi1Poll saved (or downloads and keeps "
                "it under output/magi1/), decodes straight into one tensor, and shows a preview. Several "
                "lines are decoded in order and concatenated."
            ),
            is_output_node=True,
            inputs=[
                io.String.Input("video_url", default="", multiline=False,
                                tooltip="From Magi1Poll, or an https:// URL / local MP4 path (one per line)."),
                io.Int.Input("frame_load_cap", default=0, min=0, max=100000, optional=True,
                             tooltip="Keep at most this many frames per video (0 = all)."),
                io.Int.Input("skip_first_frames", default=0, min=0, max=100000, optional=True,
                             tooltip="Skip this many frames at the start."),
                io.Int.Input("select_every_nth", default=1, min=1, max=1000, optional=True,
                             tooltip="Keep every nth frame (1 = all)."),
            ],
            outputs=[
                io.Image.Output("frames", display_name="frames",
                                tooltip="All selected frames, [N,H,W,3] RGB in 0…1."),
                io.Image.Output("last_frame", display_name="last_frame",
                                tooltip="The last frame, [1,H,W,3]: the first frame of the next clip when "
                                        "chaining."),
                io.Int.Output("frame_count", display_name="frame_count", tooltip="Number of frames returned."),
                io.Float.Output("fps", display_name="fps", tooltip="Frames per second of the (first) video."),
                io.Video.Output("video", display_name="video",
                                tooltip="The saved MP4 as a VIDEO, for SaveVideo and other video nodes."),
            ],
        )

    @classmethod
    async def execute(cls, video_url, frame_load_cap=0, skip_first_frames=0, select_every_nth=1):
        sources = params.parse_video_sources(video_url)
        paths, decoded = await pipeline.load_videos(
            _context(), sources, frame_load_cap=frame_load_cap, skip_first_frames=skip_first_frames,
            select_every_nth=select_every_nth,
        )
        frames = torch.from_numpy(decoded.frames)
        last_frame = frames[-1:].clone()
        if len(paths) == 1:
            video = glue.video_from_file(paths[0])
        else:
            video = glue.video_from_frames(frames, decoded.fps)
        return io.NodeOutput(frames, last_frame, int(frames.shape[0]), float(decoded.fps), video,
                             ui=glue.preview_video(paths))


NODES = [Magi1Submit, Magi1Poll, Magi1LoadVideo]
