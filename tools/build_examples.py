"""Builds `examples/`: three UI-format workflows, their first frame and their thumbnails.

    python -m tools.build_examples                # the workflows and magi1_first_frame.png (seconds)
    python -m tools.build_examples --thumbnails   # also runs each workflow on the bundled emulator in a
                                                  # real ComfyUI and saves a frame grid as <name>.jpg

The workflows are written from the compact descriptions at the end of this file. Widget values
follow the nodes themselves: this pack's nodes are read from a real ComfyUI's /object_info (the
V3 node classes exist only inside ComfyUI; the builder starts one through tools/comfyui_harness.py),
ComfyUI's core nodes from a small table checked against /object_info by tests/test_examples.py.
Run it with the venv's python.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_ROOT / "examples"
FIRST_FRAME_NAME = "magi1_first_frame.png"
FIRST_FRAME_SIZE = (1280, 720)

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})
CORE_CNR_ID, CORE_VERSION = "comfy-core", "0.3.75"
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"
GROUP_COLOR = "#3f789e"
# The saved view ("ds") fits the graph into the part of a 1920x1080 window that the front end's
# menus and side bar leave free: (left, top, width, height) in screen pixels.
VIEWPORT = (90, 150, 1780, 820)


# --- node specifications ------------------------------------------------------------------------
@dataclass(frozen=True)
class Widget:
    name: str
    type: str  # INT, FLOAT, STRING, BOOLEAN or COMBO
    default: Any
    control_after_generate: bool = False  # the front end stores "fixed"/"randomize"/… after the value
    upload: str | None = None  # "image": LoadImage's upload button stores one more value


@dataclass(frozen=True)
class NodeSpec:
    sockets: tuple[tuple[str, str], ...]  # link-only inputs (name, type), in order
    widgets: tuple[Widget, ...]  # widget inputs in the order the front end creates them
    outputs: tuple[tuple[str, str], ...]  # (name, type)
    cnr_id: str = CORE_CNR_ID
    version: str = CORE_VERSION


# ComfyUI 0.3.75's core nodes used here (nodes.py, comfy_extras/nodes_video.py, nodes_images.py).
CORE_NODE_SPECS: dict[str, NodeSpec] = {
    "LoadImage": NodeSpec(
        sockets=(),
        widgets=(Widget("image", "COMBO", "", upload="image"),),
        outputs=(("IMAGE", "IMAGE"), ("MASK", "MASK")),
    ),
    "PreviewImage": NodeSpec(sockets=(("images", "IMAGE"),), widgets=(), outputs=()),
    "SaveVideo": NodeSpec(
        sockets=(("video", "VIDEO"),),
        widgets=(Widget("filename_prefix", "STRING", "video/ComfyUI"), Widget("format", "COMBO", "auto"),
                 Widget("codec", "COMBO", "auto")),
        outputs=(),
    ),
    "CreateVideo": NodeSpec(
        sockets=(("images", "IMAGE"), ("audio", "AUDIO")),
        widgets=(Widget("fps", "FLOAT", 30.0),),
        outputs=(("VIDEO", "VIDEO"),),
    ),
    "ImageBatch": NodeSpec(sockets=(("image1", "IMAGE"), ("image2", "IMAGE")), widgets=(),
                           outputs=(("IMAGE", "IMAGE"),)),
    "MarkdownNote": NodeSpec(sockets=(), widgets=(Widget("text", "STRING", ""),), outputs=()),
}


def _widget_from_input_type(name: str, spec: list) -> Widget | None:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput"):
        return None
    if isinstance(kind, (list, tuple)):  # a V1 combo: [[choices], {...}]
        return Widget(name, "COMBO", options.get("default", kind[0] if kind else ""))
    if kind == "COMBO":  # a V3 combo: ["COMBO", {"options": [choices], ...}]
        choices = options.get("options") or [""]
        return Widget(name, "COMBO", options.get("default", choices[0]))
    if kind not in WIDGET_TYPES:
        return None
    fallback = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]
    control = options.get("control_after_generate")
    return Widget(
        name, kind, options.get("default", fallback),
        control_after_generate=bool(control) if control is not None else (kind == "INT" and name == "seed"),
    )


def node_spec_from_object_info(info: dict, cnr_id: str, version: str) -> NodeSpec:
    """One node's /object_info entry (`input`, `input_order`, `output`, `output_name`) → NodeSpec."""
    sockets, widgets = [], []
    for section in ("required", "optional"):
        specs = info.get("input", {}).get(section) or {}
        for name in info.get("input_order", {}).get(section, list(specs)):
            widget = _widget_from_input_type(name, specs[name])
            if widget is not None:
                widgets.append(widget)
            else:
                sockets.append((name, specs[name][0]))
    names = info.get("output_name") or info["output"]
    return NodeSpec(tuple(sockets), tuple(widgets), tuple(zip(names, info["output"], strict=True)),
                    cnr_id, version)


def pack_metadata() -> tuple[str, str]:
    """(registry id, version) from pyproject.toml, as ComfyUI-Manager's `cnr_id` and `ver`."""
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]  # tomllib needs Python 3.11; this runs on 3.10
    name = re.search(r'^name\s*=\s*"([^"]+)"', project, re.M)
    version = re.search(r'^version\s*=\s*"([^"]+)"', project, re.M)
    if not (name and version):
        raise ValueError("pyproject.toml's [project] has no name or version")
    return name.group(1), version.group(1)


PACK_NODE_TYPES = ("Magi1Submit", "Magi1Poll", "Magi1LoadVideo")


def pack_object_info() -> dict[str, dict]:
    """The pack's nodes as a real ComfyUI 0.3.75 lists them in /object_info (started for this)."""
    from tools.comfyui_harness import ComfyUIServer

    with ComfyUIServer() as server:
        return {node_type: server.object_info(node_type) for node_type in PACK_NODE_TYPES}


def all_node_specs(object_info: dict[str, dict]) -> dict[str, NodeSpec]:
    """Core nodes from the table above; the pack's from `object_info` (GET /object_info)."""
    cnr_id, version = pack_metadata()
    specs = dict(CORE_NODE_SPECS)
    for name in PACK_NODE_TYPES:
        specs[name] = node_spec_from_object_info(object_info[name], cnr_id, version)
    return specs


# --- the graph builder ----------------------------------------------------------------------------
@dataclass
class _Node:
    id: int
    type: str
    pos: tuple[float, float]
    size: tuple[float, float]
    values: dict[str, Any]
    title: str | None = None
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)


class Workflow:
    """Builds one UI-format (litegraph, version 0.4) workflow from nodes placed by hand."""

    def __init__(self, name: str, specs: dict[str, NodeSpec]) -> None:
        self.name = name
        self.specs = specs
        self.nodes: dict[str, _Node] = {}
        self.links: list[list] = []
        self.groups: list[tuple[str, tuple[str, ...]]] = []

    def node(self, key: str, node_type: str, pos: tuple[float, float], size: tuple[float, float],
             title: str | None = None, **values: Any) -> str:
        spec = self.specs[node_type]
        unknown = set(values) - {w.name for w in spec.widgets}
        if unknown:
            raise ValueError(f"{key}: {node_type} has no widget {', '.join(sorted(unknown))}")
        node = _Node(len(self.nodes) + 1, node_type, pos, size, values, title)
        node.inputs = [{"name": name, "type": kind, "link": None} for name, kind in spec.sockets]
        node.outputs = [{"name": name, "type": kind, "links": None, "slot_index": slot}
                        for slot, (name, kind) in enumerate(spec.outputs)]
        self.nodes[key] = node
        return key

    def note(self, key: str, text: str, pos: tuple[float, float], size: tuple[float, float],
             title: str) -> str:
        return self.node(key, "MarkdownNote", pos, size, title=title, text=text.strip() + "\n")

    def link(self, source: str, output: str, target: str, input_name: str) -> None:
        origin, destination = self.nodes[source], self.nodes[target]
        out_slot = next(i for i, o in enumerate(origin.outputs) if o["name"] == output)
        out_type = origin.outputs[out_slot]["type"]
        slot = next((i for i, s in enumerate(destination.inputs) if s["name"] == input_name), None)
        if slot is None:  # a widget fed by a link: the front end adds an input that names the widget
            widget = next(w for w in self.specs[destination.type].widgets if w.name == input_name)
            destination.inputs.append({"name": input_name, "type": widget.type,
                                       "widget": {"name": input_name}, "link": None})
            slot = len(destination.inputs) - 1
        socket = destination.inputs[slot]
        if socket["type"] != out_type:
            raise TypeError(f"{source}.{output} is {out_type}, {target}.{input_name} takes {socket['type']}")
        if socket["link"] is not None:
            raise ValueError(f"{target}.{input_name} is linked twice")
        link_id = len(self.links) + 1
        socket["link"] = link_id
        origin.outputs[out_slot]["links"] = (origin.outputs[out_slot]["links"] or []) + [link_id]
        self.links.append([link_id, origin.id, out_slot, destination.id, slot, out_type])

    def group(self, title: str, *keys: str) -> None:
        self.groups.append((title, keys))

    # --- serialisation --------------------------------------------------------------------------
    def _widgets_values(self, node: _Node) -> list[Any]:
        values = []
        for widget in self.specs[node.type].widgets:
            values.append(node.values.get(widget.name, widget.default))
            if widget.control_after_generate:
                values.append("fixed")
            if widget.upload:
                values.append(widget.upload)
        return values

    def _execution_order(self) -> dict[int, int]:
        """Topological order (the front end's `order`), ties broken by id."""
        incoming = {node.id: set() for node in self.nodes.values()}
        for _, origin, _, destination, _, _ in self.links:
            incoming[destination].add(origin)
        order, done = {}, set()
        while len(done) < len(incoming):
            ready = min(n for n, deps in incoming.items() if n not in done and deps <= done)
            order[ready] = len(order)
            done.add(ready)
        return order

    def _bounds(self, nodes: list[_Node]) -> tuple[float, float, float, float]:
        left = min(n.pos[0] for n in nodes)
        top = min(n.pos[1] for n in nodes)
        right = max(n.pos[0] + n.size[0] for n in nodes)
        bottom = max(n.pos[1] + n.size[1] for n in nodes)
        return left, top, right, bottom

    def to_json(self) -> dict[str, Any]:
        order = self._execution_order()
        nodes_json = []
        for node in self.nodes.values():
            spec = self.specs[node.type]
            entry: dict[str, Any] = {
                "id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size),
                "flags": {}, "order": order[node.id], "mode": 0,
                "inputs": node.inputs, "outputs": node.outputs,
            }
            if node.title:
                entry["title"] = node.title
            entry["properties"] = {"Node name for S&R": node.type, "cnr_id": spec.cnr_id, "ver": spec.version}
            entry["widgets_values"] = self._widgets_values(node)
            if node.type == "MarkdownNote":
                entry["properties"] = {}
                entry["color"], entry["bgcolor"] = NOTE_COLOR, NOTE_BGCOLOR
            nodes_json.append(entry)
        groups_json = []
        for index, (title, keys) in enumerate(self.groups, start=1):
            left, top, right, bottom = self._bounds([self.nodes[k] for k in keys])
            groups_json.append({"id": index, "title": title,
                                "bounding": [left - 20, top - 70, right - left + 40, bottom - top + 90],
                                "color": GROUP_COLOR, "font_size": 24, "flags": {}})
        left, top, right, bottom = self._bounds(list(self.nodes.values()))
        if groups_json:
            top = min(top, min(group["bounding"][1] for group in groups_json))
        view_left, view_top, view_width, view_height = VIEWPORT
        scale = round(min(1.0, view_width / (right - left), view_height / (bottom - top)), 3)
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-magi1/examples/{self.name}")),
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": nodes_json,
            "links": self.links,
            "groups": groups_json,
            "config": {},
            "extra": {"ds": {"scale": scale, "offset": [round(view_left / scale - left, 1),
                                                        round(view_top / scale - top, 1)]}},
            "version": 0.4,
        }


# --- the example descriptions ---------------------------------------------------------------------
SETUP_TEXT = """
**Key.** Set `WAVESPEED_API_KEY` before starting ComfyUI, or paste the key in Settings →
*WaveSpeed MAGI-1* → *WaveSpeed API key*. The key is never stored in the workflow.

**Try it without a key.** In this pack's folder run `python -m tools.wavespeed_emulator --port 8866`
and start ComfyUI with `WAVESPEED_BASE_URL=http://127.0.0.1:8866` and any key (`WAVESPEED_API_KEY=demo`).
The emulator returns a stand-in MP4 (the first frame, slowly zooming) in a few seconds, for free.
"""

COST_TEXT = """
**Cost.** Every task a Submit node sends is billed by WaveSpeed{tasks};
480p costs about half of 720p. A fixed seed with unchanged inputs reuses the earlier task instead of paying again; seed -1
always pays for a new one. The videos are kept under `output/magi1/` as soon as they arrive.
"""

T2V_PROMPT = (
    "A red fox trots through fresh snow in a quiet birch forest at dawn, its breath steaming in "
    "the cold air. The camera tracks alongside at ground level; soft golden light, drifting snowflakes."
)
I2V_PROMPT = (
    "The sun sinks slowly into the sea behind the lighthouse. Gentle waves roll toward the cliff, "
    "the sailboat drifts to the left, gulls glide across the sky, and the lighthouse lamp begins to "
    "sweep its beam. The camera slowly pushes in."
)
CLIP2_PROMPT = (
    "Dusk deepens into night: the first stars appear, the lighthouse beam sweeps across the dark "
    "water, and the sailboat's lantern flickers on as it heads for the harbour. The camera keeps "
    "pushing in slowly."
)

# Node sizes (front-end units), shared so the three graphs look alike.
NOTE_SIZE = (400, 440)
SUBMIT_SIZE = (400, 420)
POLL_SIZE = (320, 190)
LOAD_SIZE = (340, 460)
SAVE_SIZE = (460, 440)
PREVIEW_SIZE = (460, 360)
LOAD_IMAGE_SIZE = (340, 380)


def text_to_video(specs: dict[str, NodeSpec]) -> Workflow:
    wf = Workflow("magi1_text_to_video", specs)
    wf.note("note", f"""
## MAGI-1 text → video

A prompt goes to WaveSpeedAI's **MAGI-1 24B** model; *Wait for Video* follows the task, *Load
Video* decodes the MP4 into frames, *Save Video* keeps it in `output/video/`, and the last frame
is shown on the right.
{SETUP_TEXT}{COST_TEXT.format(tasks=" (one here, a 4 s clip at 480p)")}""", (0, 0), NOTE_SIZE,
            "Read me: MAGI-1 text to video")
    wf.node("submit", "Magi1Submit", (440, 0), SUBMIT_SIZE, prompt=T2V_PROMPT, seed=42, resolution="480p")
    wf.node("poll", "Magi1Poll", (880, 0), POLL_SIZE)
    wf.node("load", "Magi1LoadVideo", (1240, 0), LOAD_SIZE)
    wf.node("save", "SaveVideo", (1620, 0), SAVE_SIZE, filename_prefix="video/MAGI-1")
    wf.node("preview", "PreviewImage", (1620, 500), PREVIEW_SIZE, title="Last frame")
    wf.link("submit", "task", "poll", "task")
    wf.link("poll", "video_url", "load", "video_url")
    wf.link("load", "video", "save", "video")
    wf.link("load", "last_frame", "preview", "images")
    return wf


def image_to_video(specs: dict[str, NodeSpec]) -> Workflow:
    wf = Workflow("magi1_image_to_video", specs)
    wf.note("note", f"""
## MAGI-1 image → video

The image is the video's first frame: it is uploaded (lossless PNG) and MAGI-1 animates it
following the prompt. The service resizes and center-crops it to the aspect ratio.

**The image.** `{FIRST_FRAME_NAME}` sits in this pack's `examples/` folder: click *choose file to
upload* on Load Image and pick it (or copy it into `ComfyUI/input/`), or use your own picture.
A batch of B images submits B tasks and returns their frames one after another.
{SETUP_TEXT}{COST_TEXT.format(tasks=" (one here, a 4 s clip at 720p)")}""", (0, 0), NOTE_SIZE,
            "Read me: MAGI-1 image to video")
    wf.node("image", "LoadImage", (440, 0), LOAD_IMAGE_SIZE, title="First frame", image=FIRST_FRAME_NAME)
    wf.node("submit", "Magi1Submit", (820, 0), SUBMIT_SIZE, prompt=I2V_PROMPT, seed=7, resolution="720p")
    wf.node("poll", "Magi1Poll", (1260, 0), POLL_SIZE)
    wf.node("load", "Magi1LoadVideo", (1620, 0), LOAD_SIZE)
    wf.node("save", "SaveVideo", (2000, 0), SAVE_SIZE, filename_prefix="video/MAGI-1")
    wf.node("preview", "PreviewImage", (2000, 500), PREVIEW_SIZE, title="Last frame")
    wf.link("image", "IMAGE", "submit", "image")
    wf.link("submit", "task", "poll", "task")
    wf.link("poll", "video_url", "load", "video_url")
    wf.link("load", "video", "save", "video")
    wf.link("load", "last_frame", "preview", "images")
    wf.group("MAGI-1 on WaveSpeed", "submit", "poll", "load")
    return wf


def chained_extension(specs: dict[str, NodeSpec]) -> Workflow:
    wf = Workflow("magi1_chained_extension", specs)
    wf.note("note", f"""
## MAGI-1 chained extension: two clips, one shot

Clip 1 starts from the image. Its **last frame** is the first frame of clip 2, so the second
clip continues where the first one stops. The two clips' frames are joined (clip 2's first
frame, a copy of clip 1's last, is skipped by `skip_first_frames = 1`) and saved as one video at
clip 1's frame rate. Add more Submit → Wait → Load steps the same way for longer shots.

**The image.** `{FIRST_FRAME_NAME}` is in this pack's `examples/` folder: upload it on Load Image.
{SETUP_TEXT}{COST_TEXT.format(tasks=" (two tasks here, clip 2 starts when clip 1 is done; 480p)")}""",
            (0, 0), (400, 540), "Read me: MAGI-1 chained extension")
    # Two rows, one per clip, so the whole graph stays readable at the zoom it opens with.
    wf.node("image", "LoadImage", (440, 0), (300, 380), title="First frame", image=FIRST_FRAME_NAME)
    wf.node("submit1", "Magi1Submit", (780, 0), (380, 420), title="Clip 1: Submit",
            prompt=I2V_PROMPT, seed=7, resolution="480p")
    wf.node("poll1", "Magi1Poll", (1200, 0), (300, 190), title="Clip 1: Wait for Video")
    wf.node("load1", "Magi1LoadVideo", (1540, 0), (320, 460), title="Clip 1: Load Video")
    wf.node("submit2", "Magi1Submit", (780, 640), (380, 420), title="Clip 2: Submit",
            prompt=CLIP2_PROMPT, seed=8, resolution="480p")
    wf.node("poll2", "Magi1Poll", (1200, 640), (300, 190), title="Clip 2: Wait for Video")
    wf.node("load2", "Magi1LoadVideo", (1540, 640), (320, 460), title="Clip 2: Load Video",
            skip_first_frames=1)
    wf.node("join", "ImageBatch", (1940, 420), (260, 80), title="Clip 1 + clip 2")
    wf.node("video", "CreateVideo", (1940, 560), (260, 110), fps=24.0)
    wf.node("save", "SaveVideo", (2240, 420), (400, 440), filename_prefix="video/MAGI-1-extended")
    wf.link("image", "IMAGE", "submit1", "image")
    wf.link("submit1", "task", "poll1", "task")
    wf.link("poll1", "video_url", "load1", "video_url")
    wf.link("load1", "last_frame", "submit2", "image")
    wf.link("submit2", "task", "poll2", "task")
    wf.link("poll2", "video_url", "load2", "video_url")
    wf.link("load1", "frames", "join", "image1")
    wf.link("load2", "frames", "join", "image2")
    wf.link("join", "IMAGE", "video", "images")
    wf.link("load1", "fps", "video", "fps")
    wf.link("video", "VIDEO", "save", "video")
    wf.group("Clip 1", "submit1", "poll1", "load1")
    wf.group("Clip 2: continues from clip 1's last frame", "submit2", "poll2", "load2")
    wf.group("Join and save", "join", "video", "save")
    return wf


EXAMPLES = {
    "magi1_text_to_video": text_to_video,
    "magi1_image_to_video": image_to_video,
    "magi1_chained_extension": chained_extension,
}


def build_workflows(specs: dict[str, NodeSpec]) -> dict[str, dict]:
    """name → UI-format workflow, for every example (`specs` from all_node_specs)."""
    return {name: describe(specs).to_json() for name, describe in EXAMPLES.items()}


# --- the first frame ----------------------------------------------------------------------------
def _ramp(t: np.ndarray, stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """Piecewise-linear colour ramp: t (any shape) → [..., 3] float32."""
    positions = np.array([p for p, _ in stops], dtype=np.float32)
    colours = np.array([c for _, c in stops], dtype=np.float32)
    return np.stack([np.interp(t, positions, colours[:, i]) for i in range(3)], axis=-1).astype(np.float32)


def _cover(canvas: np.ndarray, mask: np.ndarray, colour: Any, alpha: float = 1.0) -> None:
    weight = (np.clip(mask, 0, 1) * alpha)[..., None]
    canvas[:] = canvas * (1 - weight) + np.asarray(colour, np.float32) * weight


def _glow(canvas: np.ndarray, mask: np.ndarray, colour: Any, strength: float = 1.0) -> None:
    canvas += np.clip(mask, 0, None)[..., None] * np.asarray(colour, np.float32) * strength


def draw_first_frame(width: int = FIRST_FRAME_SIZE[0], height: int = FIRST_FRAME_SIZE[1],
                     seed: int = 2024) -> np.ndarray:
    """A lighthouse on a cliff at sunset, a sailboat and gulls: RGB uint8 [H, W, 3], deterministic.

    Drawn at twice the size and reduced with INTER_AREA, which anti-aliases every edge.
    """
    s = 2
    W, H = width * s, height * s
    rng = np.random.default_rng(seed)
    horizon = int(H * 0.64)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    canvas = _ramp(ys / horizon, [(0.0, (14, 18, 58)), (0.35, (62, 46, 118)), (0.62, (176, 86, 128)),
                                  (0.85, (246, 146, 104)), (1.0, (255, 196, 120))])
    sun, sun_r = (int(W * 0.36), int(horizon - H * 0.035)), int(H * 0.075)

    stars = np.zeros((H, W), np.float32)
    for x, y, b in zip(rng.integers(0, W, 260), (rng.random(260) ** 1.7 * horizon * 0.55).astype(int),
                       rng.random(260), strict=True):
        brightness = float(0.35 + 0.65 * b * (1 - y / (horizon * 0.55)))
        cv2.circle(stars, (int(x), int(y)), int(1 + 2 * b), brightness, -1, cv2.LINE_AA)
    _glow(canvas, stars, (255, 250, 235), 0.8)

    above = (ys < horizon).astype(np.float32)
    distance = np.hypot(xs - sun[0], ys - sun[1]) / sun_r
    _glow(canvas, np.exp(-((distance / 3.2) ** 2)) * above, (255, 150, 70), 0.55)
    _glow(canvas, np.exp(-((distance / 1.4) ** 2)) * above, (255, 200, 120), 0.45)

    clouds = np.zeros((H, W), np.float32)
    for _ in range(14):
        centre = (int(rng.uniform(-0.1, 1.1) * W), int(rng.uniform(0.18, 0.5) * horizon))
        axes = (int(rng.uniform(0.08, 0.22) * W), int(rng.uniform(0.008, 0.02) * H))
        cv2.ellipse(clouds, centre, axes, rng.uniform(-3, 3), 0, 360, float(rng.uniform(0.5, 1.0)), -1, cv2.LINE_AA)
    clouds = np.clip(cv2.GaussianBlur(clouds, (0, 0), H * 0.01), 0, 1)[..., None] * 0.75
    lit_from_below = _ramp(ys / horizon, [(0, (120, 70, 140)), (0.5, (250, 130, 120)), (1, (255, 190, 140))])
    canvas[:] = canvas * (1 - clouds) + lit_from_below * clouds

    disc = np.zeros((H, W), np.float32)
    cv2.circle(disc, sun, sun_r, 1.0, -1, cv2.LINE_AA)
    disc[horizon:] = 0
    _cover(canvas, disc, (255, 232, 170))

    x = np.arange(W, dtype=np.float32) / W
    envelope = np.maximum(np.clip(1 - ((x - 0.08) / 0.2) ** 2, 0, 1),
                          np.clip(1 - ((x - 0.62) / 0.13) ** 2, 0, 1) * 0.8) ** 0.6
    ridge = horizon - H * envelope * (0.045 + 0.015 * np.sin(x * 23 + 1.3) + 0.008 * np.sin(x * 57)
                                      + 0.004 * np.sin(x * 131 + 2))
    islands = ((ys > ridge[None, :]) & (ys <= horizon)).astype(np.float32)
    _cover(canvas, islands, (96, 58, 104), 0.85)

    below = ys >= horizon
    sea = _ramp((ys - horizon) / (H - horizon), [(0, (214, 124, 118)), (0.25, (120, 70, 120)), (1, (16, 22, 58))])
    canvas[below] = sea[below]
    waves = np.zeros((H, W), np.float32)
    for _ in range(140):
        depth = rng.random() ** 2
        y, x0 = int(horizon + 4 + depth * (H - horizon)), int(rng.uniform(0, W))
        cv2.line(waves, (x0, y), (x0 + int((0.02 + 0.08 * depth) * W), y), float(0.3 + 0.4 * depth),
                 max(1, int(1 + 3 * depth)), cv2.LINE_AA)
    _glow(canvas, waves, (120, 90, 150), 0.35)
    glitter = np.zeros((H, W), np.float32)
    for _ in range(420):
        v = rng.random()
        y = int(horizon + 3 + v ** 1.4 * (H - horizon))
        near = (y - horizon) / (H - horizon)
        x = int(sun[0] + rng.normal(0, 0.35) * (0.02 + 0.16 * near) * W)
        half = int((0.004 + 0.03 * near) * W * rng.uniform(0.3, 1))
        cv2.line(glitter, (x - half, y), (x + half, y), float(rng.uniform(0.5, 1)), max(2, int(2 + 4 * v)), cv2.LINE_AA)
    _glow(canvas, cv2.GaussianBlur(glitter, (0, 0), 1.5), (255, 200, 130), 0.9)

    cliff = np.zeros((H, W), np.float32)
    top = int(H * 0.58)
    outline = [(0.58, 1.0), (0.63, 0.86), (0.655, 0.74), (0.69, 0.66), (0.72, 0.615), (0.76, 0.58),
               (1.0, 0.57), (1.0, 1.0)]
    cv2.fillPoly(cliff, [np.array([(int(W * px), int(H * py)) for px, py in outline], np.int32)], 1.0, cv2.LINE_AA)
    rock = _ramp((xs - W * 0.58) / (W * 0.42), [(0, (52, 30, 58)), (1, (26, 18, 36))])
    canvas[:] = canvas * (1 - cliff[..., None]) + rock * cliff[..., None]
    soft = cv2.GaussianBlur(cliff, (0, 0), 3)
    rim = np.clip(np.roll(soft, -6, axis=1) - soft, 0, 1)  # the edge that faces the sun
    _glow(canvas, rim * (ys < H * 0.9), (255, 150, 90), 1.2)
    foam = np.zeros((H, W), np.float32)
    for _ in range(60):
        y = int(rng.uniform(0.8, 1.0) * H)
        x = int(W * 0.58 + (H - y) / H * W * 0.2 + rng.normal(0, 8 * s))
        cv2.ellipse(foam, (x, y), (int(rng.uniform(10, 40) * s), 2 * s), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    _glow(canvas, cv2.GaussianBlur(foam, (0, 0), 2) * (1 - cliff), (200, 170, 200), 0.4)

    # The lighthouse: a tapered, striped tower, shaded away from the sun.
    base_y, lx = top - int(H * 0.004), int(W * 0.84)
    tower_h, base_half, top_half = int(H * 0.34), int(W * 0.028), int(W * 0.019)
    shade = np.clip(1.0 - 0.55 * (xs - (lx - base_half)) / (2 * base_half), 0.4, 1.0)[..., None]
    for i in range(6):
        y0, y1 = base_y - tower_h * i // 6, base_y - tower_h * (i + 1) // 6
        w0 = base_half + (top_half - base_half) * i / 6
        w1 = base_half + (top_half - base_half) * (i + 1) / 6
        band = np.zeros((H, W), np.float32)
        cv2.fillPoly(band, [np.array([(lx - w0, y0), (lx + w0, y0), (lx + w1, y1), (lx - w1, y1)], np.int32)],
                     1.0, cv2.LINE_AA)
        colour = np.asarray((236, 226, 222) if i % 2 == 0 else (196, 52, 56), np.float32)
        canvas[:] = canvas * (1 - band[..., None]) + colour * shade * band[..., None]
    gallery_y = base_y - tower_h
    cv2.rectangle(canvas, (lx - top_half - 14 * s, gallery_y - 6 * s), (lx + top_half + 14 * s, gallery_y + 4 * s),
                  (40, 30, 44), -1, cv2.LINE_AA)
    lantern_top = gallery_y - int(H * 0.05)
    cv2.rectangle(canvas, (lx - top_half + 6 * s, lantern_top), (lx + top_half - 6 * s, gallery_y - 6 * s),
                  (255, 236, 160), -1, cv2.LINE_AA)
    for k in (-1, 0, 1):
        bar_x = lx + k * (top_half - 6 * s) // 2
        cv2.line(canvas, (bar_x, lantern_top), (bar_x, gallery_y - 6 * s), (60, 40, 50), 2 * s, cv2.LINE_AA)
    roof = [(lx - top_half - 4 * s, lantern_top), (lx + top_half + 4 * s, lantern_top), (lx, lantern_top - int(H * 0.035))]
    cv2.fillPoly(canvas, [np.array(roof, np.int32)], (120, 30, 40), cv2.LINE_AA)
    lamp = (lx, (lantern_top + gallery_y) // 2)
    beam = np.zeros((H, W), np.float32)
    cv2.fillPoly(beam, [np.array([lamp, (int(W * 0.05), int(H * 0.2)), (int(W * 0.02), int(H * 0.34))], np.int32)],
                 1.0, cv2.LINE_AA)
    from_lamp = np.hypot(xs - lamp[0], ys - lamp[1])
    _glow(canvas, cv2.GaussianBlur(beam, (0, 0), 10 * s) * np.clip(1 - from_lamp / (W * 0.9), 0, 1) ** 1.5,
          (255, 230, 160), 0.6)
    _glow(canvas, np.exp(-((from_lamp / (H * 0.03)) ** 2)), (255, 230, 150), 0.9)

    # The keeper's cottage, one window lit.
    hx0, hx1 = int(W * 0.885), int(W * 0.96)
    hy1 = top - int(H * 0.006)
    hy0 = hy1 - int(H * 0.07)
    cv2.rectangle(canvas, (hx0, hy0), (hx1, hy1), (70, 52, 70), -1, cv2.LINE_AA)
    gable = [(hx0 - 6 * s, hy0), (hx1 + 6 * s, hy0), ((hx0 + hx1) // 2, hy0 - int(H * 0.04))]
    cv2.fillPoly(canvas, [np.array(gable, np.int32)], (100, 36, 44), cv2.LINE_AA)
    wx = hx0 + (hx1 - hx0) // 3
    cv2.rectangle(canvas, (wx, hy0 + 14 * s), (wx + 16 * s, hy0 + 30 * s), (255, 214, 120), -1, cv2.LINE_AA)
    _glow(canvas, np.exp(-((np.hypot(xs - wx - 8 * s, ys - hy0 - 22 * s) / (18 * s)) ** 2)), (255, 190, 100), 0.5)

    # A sailboat and its reflection.
    bx, by = int(W * 0.17), int(H * 0.755)
    hull = [(bx - 46 * s, by), (bx + 50 * s, by), (bx + 36 * s, by + 12 * s), (bx - 34 * s, by + 12 * s)]
    cv2.fillPoly(canvas, [np.array(hull, np.int32)], (34, 22, 40), cv2.LINE_AA)
    cv2.line(canvas, (bx, by), (bx, by - 120 * s), (40, 28, 44), 3 * s, cv2.LINE_AA)
    mainsail = [(bx + 4 * s, by - 116 * s), (bx + 4 * s, by - 6 * s), (bx + 66 * s, by - 8 * s)]
    jib = [(bx - 4 * s, by - 100 * s), (bx - 4 * s, by - 8 * s), (bx - 50 * s, by - 8 * s)]
    cv2.fillPoly(canvas, [np.array(mainsail, np.int32)], (250, 196, 170), cv2.LINE_AA)
    cv2.fillPoly(canvas, [np.array(jib, np.int32)], (214, 150, 150), cv2.LINE_AA)
    reflection = np.zeros((H, W), np.float32)
    mirrored = [(bx + 4 * s, by + 96 * s), (bx + 4 * s, by + 14 * s), (bx + 50 * s, by + 14 * s)]
    cv2.fillPoly(reflection, [np.array(mirrored, np.int32)], 1.0, cv2.LINE_AA)
    ripples = 0.5 + 0.5 * (np.sin(ys / (3 * s)) > 0)
    _cover(canvas, cv2.GaussianBlur(reflection, (0, 0), 4 * s) * ripples, (200, 140, 140), 0.35)

    for gx, gy, size in ((0.5, 0.22, 1.0), (0.54, 0.27, 0.8), (0.47, 0.3, 0.7), (0.6, 0.18, 0.6)):
        cx, cy, r = int(gx * W), int(gy * H), int(14 * s * size)
        for wing_x in (cx - r, cx + r):
            cv2.ellipse(canvas, (wing_x, cy), (r, r // 2), 0, 200, 340, (30, 22, 44), max(2, int(3 * s * size)),
                        cv2.LINE_AA)

    vignette = 1 - 0.25 * (((xs / W - 0.5) * 1.6) ** 2 + ((ys / H - 0.45) * 1.8) ** 2)
    canvas *= np.clip(vignette, 0.6, 1)[..., None]
    reduced = cv2.resize(np.clip(canvas, 0, 255), (width, height), interpolation=cv2.INTER_AREA)
    return (reduced + 0.5).astype(np.uint8)


def write_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


# --- writing ----------------------------------------------------------------------------------------
def write_workflows(examples_dir: Path = EXAMPLES_DIR) -> list[Path]:
    examples_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, workflow in build_workflows(all_node_specs(pack_object_info())).items():
        path = examples_dir / f"{name}.json"
        path.write_text(json.dumps(workflow, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def write_first_frame(examples_dir: Path = EXAMPLES_DIR) -> Path:
    path = examples_dir / FIRST_FRAME_NAME
    write_png(path, draw_first_frame())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.build_examples", description=__doc__.split("\n")[0])
    parser.add_argument("--thumbnails", action="store_true",
                        help="also run every example on the emulator in a real ComfyUI and save <name>.jpg")
    parser.add_argument("--skip-first-frame", action="store_true", help="keep the existing first frame PNG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for path in write_workflows():
        log.info("wrote %s", path.relative_to(REPO_ROOT))
    if not args.skip_first_frame:
        log.info("wrote %s", write_first_frame().relative_to(REPO_ROOT))
    if args.thumbnails:
        from tools import demo  # starts ComfyUI and the emulator: only when asked

        for path in demo.make_thumbnails(list(EXAMPLES)):
            log.info("wrote %s", path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
