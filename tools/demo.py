"""README command 1: an example workflow end to end, in a real ComfyUI, on the bundled emulator.

    scripts/demo.sh                                   # examples/magi1_image_to_video.json
    scripts/demo.sh --workflow magi1_chained_extension --out /tmp/magi1-demo

Starts the WaveSpeed emulator on a free loopback port and ComfyUI 0.3.75 with this pack (through
tools/comfyui_harness.py), both with a throwaway key, queues the workflow as ComfyUI's front end
would, and writes the MP4 the workflow saved plus `contact_sheet.png` (a grid of its frames)
under `--out`. No WaveSpeed credit is used and nothing leaves the machine.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tools import comfyui_harness as harness
from tools.wavespeed_emulator.videogen import wrap_text

log = logging.getLogger("magi1.demo")

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_ROOT / "examples"
DEFAULT_WORKFLOW = "magi1_image_to_video"
DEFAULT_OUT = REPO_ROOT / "out" / "demo"
DEMO_LATENCY_S = 5.0
DEMO_RESOLUTION = "720p"
# The emulator answers at once and has no rate limit, so the demo polls more often than the
# WaveSpeed-friendly 5 s the examples keep.
DEMO_POLL_INTERVAL_S = 1.0
RUN_TIMEOUT_S = 600.0

SHEET_COLUMNS = 4
SHEET_THUMB_WIDTH = 400
SHEET_MAX_THUMBS = 24
SHEET_GAP = 16
SHEET_BACKGROUND = (30, 30, 36)  # RGB
FONT = cv2.FONT_HERSHEY_SIMPLEX


class DemoError(RuntimeError):
    """The demo could not finish; the message says what to look at."""


def resolve_workflow(name_or_path: str) -> Path:
    candidates = [Path(name_or_path), EXAMPLES_DIR / name_or_path,
                  EXAMPLES_DIR / f"{name_or_path}.json"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    known = ", ".join(sorted(p.stem for p in EXAMPLES_DIR.glob("*.json")))
    raise DemoError(f"No workflow {name_or_path!r}: give a path or one of the examples ({known}).")


# --- the run ----------------------------------------------------------------------------------------
@dataclass
class RunResult:
    workflow: Path
    prompt: dict[str, Any]  # the API-format prompt that was queued
    history: dict[str, Any]  # its /history entry
    saved_videos: list[Path]  # what SaveVideo nodes wrote (else the pack's own copies)
    seconds: float


def _copy_inputs(workflow: dict, workflow_dir: Path, input_dir: Path) -> None:
    """Put the images the workflow's LoadImage nodes name (found beside the workflow or in
    examples/) into ComfyUI's input folder, unless they are there already (the pack itself puts
    the examples' first frame there at start)."""
    for node in workflow["nodes"]:
        if node["type"] != "LoadImage":
            continue
        name = node["widgets_values"][0]
        if (input_dir / name).is_file():
            continue
        source = next((folder / name for folder in (workflow_dir, EXAMPLES_DIR) if (folder / name).is_file()), None)
        if source is None:
            raise DemoError(f"LoadImage asks for {name!r}, which is neither in {workflow_dir} nor in {EXAMPLES_DIR}.")
        shutil.copyfile(source, input_dir / name)
        log.info("copied %s into ComfyUI's input folder", name)


def _tune_for_emulator(prompt: dict[str, Any]) -> None:
    for node in prompt.values():
        if node["class_type"] == "Magi1Poll":
            node["inputs"]["poll_interval_s"] = DEMO_POLL_INTERVAL_S


def _name_nodes(prompt: dict[str, Any], object_info: dict[str, Any]) -> None:
    """Nodes without a title of their own are called by their display name in the log."""
    for node in prompt.values():
        if node["_meta"].get("title") in (None, node["class_type"]):
            display_name = object_info.get(node["class_type"], {}).get("display_name")
            node["_meta"]["title"] = display_name or node["class_type"]


def _node_title(prompt: dict[str, Any], node_id: Any) -> str:
    node = prompt.get(str(node_id))
    return f"{node['_meta']['title']} (#{node_id})" if node else f"#{node_id}"


class _ProgressLog:
    """Logs what the front end would show: which node runs, and the MAGI-1 nodes' status text
    (when the status changes, else every few seconds)."""

    EVERY_S = 5.0

    def __init__(self, prompt: dict[str, Any]) -> None:
        self.prompt = prompt
        self.seen = 0
        self.last: dict[str, tuple[str, float]] = {}

    def show(self, events: Any) -> None:
        for _, kind, data in list(events.events[self.seen:]):
            self.seen += 1
            if kind == "executing" and data and data.get("node"):
                log.info("running %s", _node_title(self.prompt, data["node"]))
            elif kind == "progress_text" and data:
                status = data["text"].split(" ")[0]
                previous, when = self.last.get(data["node"], ("", 0.0))
                if status != previous or time.monotonic() - when >= self.EVERY_S:
                    self.last[data["node"]] = (status, time.monotonic())
                    log.info("%s: %s", _node_title(self.prompt, data["node"]), data["text"].replace("\n", " | "))


def _saved_files(server: Any, history: dict[str, Any], prompt: dict[str, Any], class_type: str) -> list[Path]:
    paths = []
    for node_id, outputs in (history.get("outputs") or {}).items():
        if prompt.get(node_id, {}).get("class_type") != class_type:
            continue
        for item in outputs.get("images", []):
            if item.get("type") == "output":
                paths.append(server.output_dir / item.get("subfolder", "") / item["filename"])
    return paths


def run_workflow(server: Any, workflow_path: Path, *, timeout: float = RUN_TIMEOUT_S,
                 tune=_tune_for_emulator) -> RunResult:
    """Queue one UI-format workflow in a running ComfyUI, logging progress until it is done."""
    workflow = json.loads(workflow_path.read_text(encoding="utf-8"))
    _copy_inputs(workflow, workflow_path.parent, server.input_dir)
    object_info = server.object_info()
    prompt = harness.workflow_to_prompt(workflow, object_info)
    _name_nodes(prompt, object_info)
    tune(prompt)
    began = time.monotonic()
    with server.websocket() as events:
        prompt_id = server.queue(prompt, client_id=events.client_id)
        log.info("queued %s as prompt %s", workflow_path.name, prompt_id)
        progress = _ProgressLog(prompt)
        deadline = began + timeout
        while server.history(prompt_id).get("status", {}).get("status_str") not in ("success", "error"):
            progress.show(events)
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        progress.show(events)
        history = server.wait(prompt_id, timeout=max(1.0, deadline - time.monotonic()))
    seconds = time.monotonic() - began
    saved = _saved_files(server, history, prompt, "SaveVideo") or \
        _saved_files(server, history, prompt, "Magi1LoadVideo")
    return RunResult(workflow_path, prompt, history, saved, seconds)


def prompts_of(prompt: dict[str, Any]) -> list[str]:
    return [node["inputs"]["prompt"] for node in prompt.values()
            if node["class_type"] == "Magi1Submit" and isinstance(node["inputs"].get("prompt"), str)]


# --- pictures ----------------------------------------------------------------------------------------
@dataclass
class VideoFrames:
    frames: list[tuple[int, np.ndarray]]  # (index, RGB uint8) of the frames kept
    frame_count: int
    fps: float
    width: int
    height: int
    step: int  # frames between two kept ones


def sample_frames(video_path: Path, *, every: int = 8, max_frames: int = SHEET_MAX_THUMBS,
                  spread: int | None = None) -> VideoFrames:
    """Every `every`-th frame from the first (further apart if that would give more than
    `max_frames`); or, with `spread`, that many frames evenly apart from the first to the last."""
    capture = cv2.VideoCapture(str(video_path))
    if not capture.isOpened():
        raise DemoError(f"OpenCV cannot open {video_path}.")
    try:
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        step = max(every, math.ceil(max(reported, 1) / max_frames))
        wanted = set(np.linspace(0, reported - 1, spread).round().astype(int).tolist()) if spread else None
        kept, index = [], 0
        while True:
            ok = capture.grab()
            if not ok:
                break
            if (index in wanted) if wanted is not None else (index % step == 0 and len(kept) < max_frames):
                ok, bgr = capture.retrieve()
                if not ok:
                    break
                kept.append((index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            index += 1
    finally:
        capture.release()
    if not kept:
        raise DemoError(f"{video_path} has no frames OpenCV can decode.")
    height, width = kept[0][1].shape[:2]
    return VideoFrames(kept, index, fps, width, height, step)


def _wrap(text: str, scale: float, thickness: int, max_width: int) -> list[str]:
    return wrap_text(text, FONT, scale, thickness, max_width)


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour=(235, 235, 240),
          thickness: int = 1) -> None:
    ascii_text = text.encode("ascii", "replace").decode()  # Hershey fonts draw ASCII only
    cv2.putText(canvas, ascii_text, origin, FONT, scale, colour, thickness, cv2.LINE_AA)


def contact_sheet(video: VideoFrames, title: str, prompts: list[str], *, columns: int = SHEET_COLUMNS,
                  thumb_width: int = SHEET_THUMB_WIDTH) -> np.ndarray:
    """A grid of frames under a title strip (title, prompt(s), size, fps, frame count): RGB uint8."""
    thumb_height = round(thumb_width * video.height / video.width)
    rows = math.ceil(len(video.frames) / columns)
    width = columns * thumb_width + (columns + 1) * SHEET_GAP
    text_width = width - 2 * SHEET_GAP
    prompt_lines = []
    for number, prompt in enumerate(prompts, start=1):
        label = f"Prompt {number}: " if len(prompts) > 1 else "Prompt: "
        prompt_lines += _wrap(label + " ".join(prompt.split()), 0.55, 1, text_width)[:4]
    header = 24 + 40 + 28 * len(prompt_lines) + 36 + 12
    height = header + rows * (thumb_height + SHEET_GAP) + SHEET_GAP
    sheet = np.empty((height, width, 3), np.uint8)
    sheet[:] = SHEET_BACKGROUND

    y = 24 + 28
    _text(sheet, title, (SHEET_GAP, y), 0.95, (255, 255, 255), 2)
    for line in prompt_lines:
        y += 28
        _text(sheet, line, (SHEET_GAP, y), 0.55, (210, 210, 220))
    y += 36
    seconds = video.frame_count / video.fps if video.fps else 0.0
    shown = "every frame shown" if video.step == 1 else f"1 frame in {video.step} shown"
    meta = f"{video.width} x {video.height}   {video.fps:g} fps   {video.frame_count} frames ({seconds:.1f} s)   {shown}"
    _text(sheet, meta, (SHEET_GAP, y), 0.6, (255, 200, 120), 1)

    for slot, (index, frame) in enumerate(video.frames):
        row, column = divmod(slot, columns)
        left = SHEET_GAP + column * (thumb_width + SHEET_GAP)
        top = header + row * (thumb_height + SHEET_GAP)
        sheet[top:top + thumb_height, left:left + thumb_width] = cv2.resize(
            frame, (thumb_width, thumb_height), interpolation=cv2.INTER_AREA)
        label = f"#{index}  {index / video.fps:.2f} s" if video.fps else f"#{index}"
        (label_w, label_h), _ = cv2.getTextSize(label, FONT, 0.5, 1)
        cv2.rectangle(sheet, (left, top + thumb_height - label_h - 12), (left + label_w + 12, top + thumb_height),
                      (0, 0, 0), -1)
        _text(sheet, label, (left + 6, top + thumb_height - 6), 0.5, (255, 255, 255))
    return sheet


def thumbnail(video: VideoFrames, caption: str, size: int = 512) -> np.ndarray:
    """A square template-browser thumbnail: 2 x 3 frames over a caption strip: RGB uint8."""
    columns, rows, gap = 2, 3, 6
    cell_w = (size - (columns + 1) * gap) // columns
    cell_h = round(cell_w * video.height / video.width)
    picks = np.linspace(0, len(video.frames) - 1, columns * rows).round().astype(int)  # 6 when spread=6
    image = np.empty((size, size, 3), np.uint8)
    image[:] = SHEET_BACKGROUND
    grid_h = rows * cell_h + (rows + 1) * gap
    for slot, pick in enumerate(picks):
        row, column = divmod(slot, columns)
        left, top = gap + column * (cell_w + gap), gap + row * (cell_h + gap)
        image[top:top + cell_h, left:left + cell_w] = cv2.resize(
            video.frames[pick][1], (cell_w, cell_h), interpolation=cv2.INTER_AREA)
    lines = _wrap(caption, 0.7, 2, size - 2 * gap)[:2]
    y = grid_h + (size - grid_h - 30 * len(lines)) // 2 + 22
    for line in lines:
        _text(image, line, (gap + 4, y), 0.7, (255, 255, 255), 2)
        y += 30
    return image


def write_image(path: Path, rgb: np.ndarray, *params: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params)):
        raise DemoError(f"Could not write {path}.")
    return path


# --- servers ---------------------------------------------------------------------------------------
class DemoServers:
    """The emulator and a ComfyUI pointed at it, in a throwaway folder; a context manager."""

    def __init__(self, *, latency: float = DEMO_LATENCY_S, resolution: str = DEMO_RESOLUTION,
                 keep_dir_on_failure: bool = True, log_requests: bool = False) -> None:
        if not log_requests:  # one line per HTTP request drowns the progress
            logging.getLogger("tools.wavespeed_emulator").setLevel(logging.WARNING)
        self.latency, self.resolution = latency, resolution
        self.keep_dir_on_failure = keep_dir_on_failure
        self.workdir: Path | None = None
        self.emulator = None
        self.server = None

    def __enter__(self) -> DemoServers:
        from tools.wavespeed_emulator import EmulatorServer

        harness.check_prerequisites()
        key = "demo-" + secrets.token_hex(8)  # throwaway: only this emulator accepts it
        self.emulator = EmulatorServer(port=0, latency=self.latency, default_resolution=self.resolution,
                                       api_key=key).start()
        log.info("WaveSpeed emulator on %s (latency %.1f s, %s by default)", self.emulator.base_url,
                 self.latency, self.resolution)
        self.workdir = Path(tempfile.mkdtemp(prefix="magi1-demo-comfyui-"))
        self.server = harness.ComfyUIServer(
            self.workdir, env={"WAVESPEED_BASE_URL": self.emulator.base_url, "WAVESPEED_API_KEY": key})
        log.info("starting ComfyUI 0.3.75 with this pack (%s)", self.server.comfy_dir)
        try:
            self.server.start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        log.info("ComfyUI is up on %s after %.1f s", self.server.url, self.server.start_seconds)
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self.server is not None:
            self.server.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self.workdir is not None:
            if exc_type is not None and self.keep_dir_on_failure:
                log.error("ComfyUI's folder (log: comfyui.log) is kept for a look: %s", self.workdir)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)


def make_thumbnails(names: list[str]) -> list[Path]:
    """Run each example on the emulator and save `examples/<name>.jpg` from its output video."""
    written = []
    with DemoServers(latency=1.0) as servers:
        for name in names:
            result = run_workflow(servers.server, EXAMPLES_DIR / f"{name}.json")
            if not result.saved_videos:
                raise DemoError(f"{name} saved no video.")
            caption = "MAGI-1  " + name.removeprefix("magi1_").replace("_", " ").replace(" to ", " -> ")
            picture = thumbnail(sample_frames(result.saved_videos[0], spread=6), caption)
            written.append(write_image(EXAMPLES_DIR / f"{name}.jpg", picture, cv2.IMWRITE_JPEG_QUALITY, 88))
    return written


# --- command line -----------------------------------------------------------------------------------
def explain(exc: BaseException) -> str:
    """One line: which node failed and why (a PromptFailed's error), else the message's first line."""
    error = getattr(exc, "error", None)
    if isinstance(error, dict):
        kind = str(error.get("exception_type", "")).rsplit(".", 1)[-1]
        return (f"node {error.get('node_id')} ({error.get('node_type')}) raised {kind}: "
                f"{str(error.get('exception_message', '')).strip()}")
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.sh", description="Run an example workflow in a real ComfyUI on the bundled emulator "
        "and write its MP4 and a contact sheet of its frames.")
    parser.add_argument("--workflow", default=DEFAULT_WORKFLOW,
                        help="an example's name (magi1_text_to_video, magi1_image_to_video, "
                             "magi1_chained_extension) or a workflow JSON path (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: out/demo)")
    parser.add_argument("--latency", type=float, default=DEMO_LATENCY_S,
                        help="seconds the emulator takes per task (default: %(default)s)")
    parser.add_argument("--every", type=int, default=8, help="contact sheet: every nth frame (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=RUN_TIMEOUT_S, help="give up after (default: %(default)s s)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every emulator request, and ComfyUI's traceback and log tail on failure")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    began = time.monotonic()
    try:
        workflow_path = resolve_workflow(args.workflow)
        out_dir = args.out
        with DemoServers(latency=args.latency, log_requests=args.verbose) as servers:
            result = run_workflow(servers.server, workflow_path, timeout=args.timeout)
            task_ids = [task["id"] for task in servers.emulator.tasks()]
            if not result.saved_videos:
                raise DemoError(f"{workflow_path.name} ran but saved no video (it has no SaveVideo or "
                                "Magi1LoadVideo node).")
            log.info("%s finished in %.1f s; MAGI-1 task(s): %s", workflow_path.name, result.seconds,
                     ", ".join(task_ids) or "none")
            out_dir.mkdir(parents=True, exist_ok=True)
            video_path = out_dir / f"{workflow_path.stem}.mp4"
            shutil.copyfile(result.saved_videos[-1], video_path)
        frames = sample_frames(video_path, every=max(1, args.every))
        title = f"MAGI-1 demo: {workflow_path.stem} (WaveSpeed emulator, not the real model)"
        sheet_path = write_image(out_dir / "contact_sheet.png",
                                 contact_sheet(frames, title, prompts_of(result.prompt)))
    except KeyboardInterrupt:
        log.error("demo stopped (Ctrl-C)")
        return 130
    except DemoError as exc:
        log.error("demo failed: %s", exc)
        return 1
    except Exception as exc:  # noqa: BLE001 - any failure ends the demo with one clear line
        if args.verbose:
            log.error("%s", exc)  # the harness's messages end with ComfyUI's traceback and log tail
        log.error("demo failed: %s%s", explain(exc), "" if args.verbose else " (details: --verbose)")
        return 1
    log.info("done in %.1f s: %d frames, %dx%d, %g fps", time.monotonic() - began, frames.frame_count,
             frames.width, frames.height, frames.fps)
    print(video_path)
    print(sheet_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
