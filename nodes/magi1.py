"""The three MAGI-1 nodes. Thin: each reads its inputs, calls the recipe in magi1.pipeline, and
turns the result into ComfyUI values. ComfyUI itself is reached only through magi1.comfy_glue."""
from __future__ import annotations

import logging
import time
import torch

from ..magi1 import comfy_glue as glue
from ..magi1 import params, pipeline
from ..magi1.poller import WaitSnapshot

log = logging.getLogger(__name__)

CATEGORY = "WaveSpeed/MAGI-1"
TASK_TYPE = "MAGI1_TASK"
PROGRESS_STEPS = 1000


def _context() -> pipeline.Context:
    return pipeline.Context(
        output_dir=glue.output_directory(),
        private_dir=glue.private_directory(),
        throw_if_interrupted=glue.throw_if_interrupted,
        run_id=glue.current_prompt_id(),
        on_submit_status=glue.node_status_sender(),
    )


class Magi1Submit:
    DESCRIPTION = (
        "Submits a MAGI-1 24B text/image-to-video task to WaveSpeed (billed per task). Optionally "
        "uploads an IMAGE as the first frame; a batch of B images submits B tasks. A fixed seed with "
        "identical inputs reuses the earlier task instead of paying again."
    )
    CATEGORY = CATEGORY
    FUNCTION = "submit"
    RETURN_TYPES = (TASK_TYPE, "STRING")
    RETURN_NAMES = ("task", "task_id")
    OUTPUT_TOOLTIPS = (
        "The submitted task(s); connect to Magi1Poll.",
        "The task id(s), one per line: paste into Magi1Poll's task_id to collect them later.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "prompt": ("STRING", {
                    "multiline": True, "default": "",
                    "tooltip": "What happens in the video: subject, motion, camera. Required.",
                }),
                "seed": ("INT", {
                    "default": 0, "min": params.SEED_MIN, "max": params.SEED_MAX,
                    "control_after_generate": True,  # web/magi1.js starts it on "fixed"
                    "tooltip": "-1 lets the service pick (and always submits a new, billed task). "
                               "A fixed seed with unchanged inputs reuses the earlier task: not billed twice.",
                }),
            },
            "optional": {
                "image": ("IMAGE", {
                    "tooltip": "First frame(s). Resized and center-cropped by the service to the aspect "
                               "ratio. A batch of B images submits B tasks.",
                }),
                "resolution": (list(params.RESOLUTIONS), {
                    "default": "default",
                    "tooltip": "480p costs about half of 720p. 'default' lets the service decide.",
                }),
                "aspect_ratio": (list(params.ASPECT_RATIOS), {
                    "default": "default",
                    "tooltip": "'auto' follows the first frame. 'default' sends nothing.",
                }),
                "num_frames": ("INT", {
                    "default": 0, "min": 0, "max": params.NUM_FRAMES_MAX,
                    "tooltip": f"0 = the service's default ({params.DEFAULT_NUM_FRAMES}); "
                               f"else {params.NUM_FRAMES_MIN}…{params.NUM_FRAMES_MAX}.",
                }),
                "frames_per_second": ("INT", {
                    "default": 0, "min": 0, "max": params.FPS_MAX,
                    "tooltip": f"0 = the service's default ({params.DEFAULT_FPS}); else {params.FPS_MIN}…{params.FPS_MAX}.",
                }),
                "enable_safety_checker": ("BOOLEAN", {
                    "default": True, "tooltip": "The service's content safety check.",
                }),
            },
        }

    @classmethod
    def IS_CHANGED(cls, seed=0, **_):
        # Seed -1 means "a new video every time": never serve it from ComfyUI's cache. A fresh NaN
        # object each call: it equals nothing, not even an earlier NaN (math.nan would be identical).
        return float("nan") if seed == -1 else seed

    async def submit(self, prompt, seed, image=None, resolution="default", aspect_ratio="default",
                     num_frames=0, frames_per_second=0, enable_safety_checker=True):
        request = params.build_request(prompt, seed, resolution, aspect_ratio, num_frames,
                                       frames_per_second, enable_safety_checker)
        first_frames = image.detach().cpu().float().numpy() if image is not None else None
        task = await pipeline.submit(_context(), request, first_frames)
        return (task, "\n".join(task.task_ids))


class Magi1Poll:
    DESCRIPTION = (
        "Waits for MAGI-1 task(s) with progress and status on the node, then saves each MP4 under "
        "ComfyUI's output folder (magi1/) at once, so a paid result is never lost. Cancel stops the "
        "wait within a second; the task keeps running on WaveSpeed and can be collected by id."
    )
    CATEGORY = CATEGORY
    FUNCTION = "poll"
    OUTPUT_NODE = True  # it saves the paid MP4, so a graph may end here; and its preview is re-sent
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("video_url",)
    OUTPUT_TOOLTIPS = ("The video URL(s), one per line; the saved copies are used by Magi1LoadVideo.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {},
            "optional": {
                "task": (TASK_TYPE, {"tooltip": "From Magi1Submit."}),
                "task_id": ("STRING", {
                    "default": "", "multiline": False,
                    "tooltip": "Collect task(s) by id (one per line) when no task is connected, e.g. "
                               "after a restart or a timeout.",
                }),
                "timeout_s": ("INT", {
                    "default": 1800, "min": 10, "max": 24 * 3600,
                    "tooltip": "Stop waiting after this many seconds (the task keeps running and can be "
                               "collected later by id).",
                }),
                "poll_interval_s": ("FLOAT", {
                    "default": 5.0, "min": 0.2, "max": 120.0, "step": 0.1,
                    "tooltip": "Seconds between status checks. WaveSpeed asks for 5 s or more.",
                }),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    async def poll(self, task=None, task_id="", timeout_s=1800, poll_interval_s=5.0, unique_id=None):
        task_ids = list(task.task_ids) if task is not None else params.parse_task_ids(task_id)
        ctx = _context()
        progress = glue.NodeProgress(unique_id, PROGRESS_STEPS)

        def show(snapshot: WaitSnapshot) -> None:
            ctx.check_cancel()  # first, so a Cancel is remembered for this run's worker threads
            progress.update(int(snapshot.fraction() * PROGRESS_STEPS), status_text(snapshot))

        started = time.monotonic()
        saved = await pipeline.wait_and_save(
            ctx, task_ids, timeout_s=timeout_s, interval_s=max(float(poll_interval_s), 0.2), on_update=show
        )
        count = f"{len(saved)} video{'s' if len(saved) != 1 else ''}"
        progress.update(PROGRESS_STEPS, f"done · {count} saved · {time.monotonic() - started:.0f} s")
        return {"ui": glue.output_preview([path for _, path in saved]),
                "result": ("\n".join(url for url, _ in saved),)}


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
    return f"{line}\ntask {ids}"


class Magi1LoadVideo:
    DESCRIPTION = (
        "Loads MAGI-1 video(s) as IMAGE frames: uses the copy Magi1Poll saved (or downloads and keeps "
        "it under output/magi1/), decodes straight into one tensor, and shows a preview. Several "
        "lines are decoded in order and concatenated."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE", "IMAGE", "INT", "FLOAT", "VIDEO")
    RETURN_NAMES = ("frames", "last_frame", "frame_count", "fps", "video")
    OUTPUT_TOOLTIPS = (
        "All selected frames, [N,H,W,3] RGB in 0…1.",
        "The last frame, [1,H,W,3]: the first frame of the next clip when chaining.",
        "Number of frames returned.",
        "Frames per second of the (first) video.",
        "The saved MP4 as a VIDEO, for SaveVideo and other video nodes.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "video_url": ("STRING", {
                    "default": "", "multiline": False,
                    "tooltip": "From Magi1Poll, or an https:// URL / local MP4 path (one per line).",
                }),
            },
            "optional": {
                "frame_load_cap": ("INT", {
                    "default": 0, "min": 0, "max": 100000,
                    "tooltip": "Keep at most this many frames per video (0 = all).",
                }),
                "skip_first_frames": ("INT", {
                    "default": 0, "min": 0, "max": 100000, "tooltip": "Skip this many frames at the start.",
                }),
                "select_every_nth": ("INT", {
                    "default": 1, "min": 1, "max": 1000, "tooltip": "Keep every nth frame (1 = all).",
                }),
            },
        }

    async def load(self, video_url, frame_load_cap=0, skip_first_frames=0, select_every_nth=1):
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
        return {
            "ui": glue.output_preview(paths),
            "result": (frames, last_frame, int(frames.shape[0]), float(decoded.fps), video),
        }


NODE_CLASS_MAPPINGS = {
    "Magi1Submit": Magi1Submit,
    "Magi1Poll": Magi1Poll,
    "Magi1LoadVideo": Magi1LoadVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "Magi1Submit": "MAGI-1 Submit (WaveSpeed)",
    "Magi1Poll": "MAGI-1 Wait for Video (WaveSpeed)",
    "Magi1LoadVideo": "MAGI-1 Load Video",
}
