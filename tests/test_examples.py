"""The example workflows: well-formed, what tools/build_examples.py writes, known to a real
ComfyUI (0.3.75 and 0.33.0), served in its template browser, and running there end to end on the emulator.

The runs check what every graph must do: the uploaded PNG is pixel-exact to the IMAGE
given, the first decoded frame is the image sent (after the emulator's resize and crop), a
chained clip starts from the previous clip's last decoded frame, a batch of B images is B tasks
with their frames concatenated, and every task is exactly one submit POST.
"""
from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from video_reference import read_rgb_frames

from tools.comfyui_harness import SKIPPED_NODE_TYPES, WIDGET_TYPES, workflow_to_prompt
from tools import build_examples
from tools.wavespeed_emulator import videogen

EXAMPLES_DIR = build_examples.EXAMPLES_DIR
FIRST_FRAME = EXAMPLES_DIR / build_examples.FIRST_FRAME_NAME
EXAMPLE_NAMES = list(build_examples.EXAMPLES)
TEST_LATENCY_S = 0.5
TEST_POLL_INTERVAL_S = 0.2
RUN_TIMEOUT_S = 180
# The emulator's MPEG-4 encoder is lossy: the first frame (an intra frame) of this detailed
# picture comes back within this mean absolute difference (0…255 scale).
FIRST_FRAME_MEAN_TOLERANCE = 4.0
# The same decoder on both sides, only float → uint8 rounding in between.
SAME_FRAME_MAX_TOLERANCE = 1


def load_example(name: str) -> dict:
    return json.loads((EXAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8"))


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cannot read {path}"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_rgb(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "not an image"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_video(path: Path) -> list[np.ndarray]:
    return read_rgb_frames(path)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# --- the files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_is_a_well_formed_ui_workflow(name):
    workflow = load_example(name)
    assert workflow["version"] == 0.4
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["last_node_id"] == max(nodes)
    assert workflow["last_link_id"] == max(link[0] for link in workflow["links"])
    for link_id, origin, out_slot, target, in_slot, kind in workflow["links"]:
        assert link_id in nodes[origin]["outputs"][out_slot]["links"]
        socket = nodes[target]["inputs"][in_slot]
        assert socket["link"] == link_id and socket["type"] == kind
        assert nodes[origin]["outputs"][out_slot]["type"] == kind
    notes = [node for node in nodes.values() if node["type"] == "MarkdownNote"]
    assert len(notes) == 1 and "WAVESPEED_API_KEY" in notes[0]["widgets_values"][0]
    assert (EXAMPLES_DIR / f"{name}.jpg").is_file(), "the template browser shows <name>.jpg as its thumbnail"


def test_the_first_frame_is_a_720p_rgb_png_our_code_draws():
    image = read_rgb(FIRST_FRAME)
    assert image.shape == (720, 1280, 3)
    # Not bit-exact: another OpenCV may anti-alias an edge a little differently.
    assert mean_abs_diff(image, build_examples.draw_first_frame()) < 0.5


# --- inside a real ComfyUI ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def object_info(comfyui):
    return comfyui.server.object_info()


def test_examples_are_what_the_builder_writes_from_the_nodes_today(object_info):
    # Changing a node's inputs without running `python -m tools.build_examples` fails here; on
    # both ComfyUI versions: the examples are the same whichever ComfyUI lists the nodes.
    specs = build_examples.all_node_specs(object_info)
    for name, workflow in build_examples.build_workflows(specs).items():
        assert load_example(name) == json.loads(json.dumps(workflow)), f"rebuild {name}.json"


@pytest.fixture
def comfyui_emulator(comfyui):
    """The session's emulator, emptied, with a short latency (restored afterwards)."""
    comfyui.emulator.reset()
    comfyui.emulator.set_latency(TEST_LATENCY_S)
    yield comfyui.emulator
    comfyui.emulator.reset()


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_uses_only_nodes_comfyui_knows_with_their_widgets(name, object_info):
    # A newer ComfyUI may give a core node more optional widgets (0.33.0's CreateVideo has
    # `bit_depth` after `fps`): a workflow saved without them gets their defaults, in the front
    # end as in the API prompt, so the example's widgets must be the first ones, the rest optional.
    for node in load_example(name)["nodes"]:
        if node["type"] in SKIPPED_NODE_TYPES:  # front-end-only: notes, reroutes
            continue
        assert node["type"] in object_info, f"{node['type']} is not a node of this ComfyUI"
        spec = build_examples.all_node_specs(object_info)[node["type"]]
        info = object_info[node["type"]]
        widgets = [(section, name_) for section in ("required", "optional")
                   for name_ in info.get("input_order", {}).get(section, [])
                   if isinstance(info["input"][section][name_][0], list)
                   or info["input"][section][name_][0] in WIDGET_TYPES]
        names = [w.name for w in spec.widgets]
        assert [name_ for _, name_ in widgets[:len(names)]] == names, node["type"]
        assert all(section == "optional" for section, _ in widgets[len(names):]), node["type"]


def test_examples_are_listed_and_served_by_the_template_browser(comfyui):
    listed = comfyui.server.get("/workflow_templates").json()
    pack = next(iter(comfyui.server.packs))
    assert sorted(listed.get(pack, [])) == sorted(EXAMPLE_NAMES)
    for name in EXAMPLE_NAMES:
        served = comfyui.server.get(f"/api/workflow_templates/{pack}/{name}.json")
        assert served.status_code == 200 and served.json() == load_example(name)
        thumbnail = comfyui.server.get(f"/api/workflow_templates/{pack}/{name}.jpg")
        assert thumbnail.status_code == 200 and thumbnail.content[:3] == b"\xff\xd8\xff"


@pytest.fixture(scope="module")
def browser_page(comfyui):
    """ComfyUI's own front end in Debian's chromium, the graph editor loaded."""
    from browser_support import VIEWPORT, ComfyPage, launch_chromium
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield ComfyPage(browser.new_context(viewport=VIEWPORT).new_page(), comfyui.server).open()
        finally:
            browser.close()


def added_defaults(from_front_end: dict, ours: dict, object_info: dict) -> dict:
    """Inputs the front end sent that the saved workflow lacks: a newer core node's optional
    widgets (0.33.0's CreateVideo `bit_depth`), which must be at their defaults."""
    added = {}
    for key, node in from_front_end.items():
        info = object_info[node["class_type"]]["input"].get("optional", {})
        for name in set(node["inputs"]) - set(ours.get(key, {}).get("inputs", {})):
            assert name in info and node["inputs"][name] == info[name][1].get("default"), (key, name)
            added[(key, name)] = node["inputs"].pop(name)
    return added


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_opens_from_the_template_browser_as_the_prompt_the_tests_queue(
        name, object_info, browser_page):
    # The front end's own UI → API conversion of the loaded template is what a user's Run sends;
    # the tests (and the demo) queue the harness's conversion: they must agree.
    browser_page.load_template(name)
    browser_page.page.wait_for_function("(count) => window.app.graph._nodes.length === count",
                                        arg=len(load_example(name)["nodes"]), timeout=30_000)
    from_front_end = browser_page.js("async () => (await window.app.graphToPrompt()).output")
    ours = workflow_to_prompt(load_example(name), object_info)
    added_defaults(from_front_end, ours, object_info)

    def essentials(prompt):
        return {key: (node["class_type"], node["inputs"]) for key, node in prompt.items()}

    assert essentials(from_front_end) == essentials(ours)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_converts_to_an_api_prompt_comfyui_accepts_the_shape_of(name, object_info):
    prompt = workflow_to_prompt(load_example(name), object_info)
    kinds = sorted(node["class_type"] for node in prompt.values())
    assert "Magi1Submit" in kinds and "Magi1Poll" in kinds and "Magi1LoadVideo" in kinds
    for node in prompt.values():
        if node["class_type"] == "Magi1LoadVideo":
            assert isinstance(node["inputs"]["video_url"], list), "video_url comes from Magi1Poll"


# --- running them ----------------------------------------------------------------------------------------
def prepare(comfyui, object_info, name: str, **submit_overrides) -> dict:
    """The example as an API prompt with fresh seeds (so neither ComfyUI's cache nor the pack's
    task ledger answers instead of the emulator), and quick polling. The first frame is not copied:
    the pack puts it into ComfyUI's input folder at start (test_a_fresh_comfyui_has_the_examples_first_frame)."""
    prompt = workflow_to_prompt(load_example(name), object_info)
    for node in prompt.values():
        if node["class_type"] == "Magi1Submit":
            node["inputs"]["seed"] = secrets.randbelow(2**31 - 1)
            node["inputs"].update(submit_overrides)
        elif node["class_type"] == "Magi1Poll":
            node["inputs"]["poll_interval_s"] = TEST_POLL_INTERVAL_S
    return prompt


def node_id(prompt: dict, class_type: str, title: str | None = None) -> str:
    found = [key for key, node in prompt.items() if node["class_type"] == class_type
             and (title is None or node["_meta"]["title"] == title)]
    assert len(found) == 1, (class_type, title, found)
    return found[0]


def add_preview(prompt: dict, key: str, image: list, first_only: bool = False) -> None:
    """A PreviewImage of an IMAGE output (lossless PNG in ComfyUI's temp folder)."""
    if first_only:
        prompt[f"{key}_pick"] = {"class_type": "ImageFromBatch",
                                 "inputs": {"image": image, "batch_index": 0, "length": 1}}
        image = [f"{key}_pick", 0]
    prompt[key] = {"class_type": "PreviewImage", "inputs": {"images": image}}


def output_files(comfyui, entry: dict, key: str) -> list[Path]:
    roots = {"output": comfyui.server.output_dir, "temp": comfyui.server.temp_dir}
    return [roots[item["type"]] / item.get("subfolder", "") / item["filename"]
            for item in entry["outputs"][key]["images"]]


def saved_video(comfyui, prompt: dict, entry: dict) -> list[np.ndarray]:
    (path,) = output_files(comfyui, entry, node_id(prompt, "SaveVideo"))
    return read_video(path)


def submits(emulator) -> list[dict]:
    return [e for e in emulator.journal() if e["route"] == "submit" and e["method"] == "POST"]


def test_text_to_video_runs_on_the_emulator(comfyui, comfyui_emulator, object_info):
    prompt = prepare(comfyui, object_info, "magi1_text_to_video")
    entry = comfyui.server.run(prompt, timeout=RUN_TIMEOUT_S)

    (task,) = comfyui_emulator.tasks()
    assert len(submits(comfyui_emulator)) == 1
    assert task["image"] is None and task["resolution"] == "480p"
    frames = saved_video(comfyui, prompt, entry)
    assert len(frames) == task["num_frames"] and frames[0].shape == (task["height"], task["width"], 3)
    (last_frame,) = output_files(comfyui, entry, node_id(prompt, "PreviewImage"))
    assert max_abs_diff(read_rgb(last_frame), frames[-1]) <= SAME_FRAME_MAX_TOLERANCE


def test_image_to_video_sends_the_image_exactly_and_starts_the_video_with_it(
        comfyui, comfyui_emulator, object_info):
    prompt = prepare(comfyui, object_info, "magi1_image_to_video", resolution="480p")
    load = node_id(prompt, "Magi1LoadVideo")
    add_preview(prompt, "first_decoded", [load, 0], first_only=True)
    entry = comfyui.server.run(prompt, timeout=RUN_TIMEOUT_S)

    (task,) = comfyui_emulator.tasks()
    assert len(submits(comfyui_emulator)) == 1
    first_frame = read_rgb(FIRST_FRAME)
    uploaded = decode_rgb(comfyui_emulator.uploaded_bytes(task["image"]))
    assert np.array_equal(uploaded, first_frame), "the uploaded PNG differs from the IMAGE LoadImage made"

    cropped = videogen.cover_crop(first_frame, task["width"], task["height"])
    (first_decoded,) = output_files(comfyui, entry, "first_decoded")
    assert mean_abs_diff(read_rgb(first_decoded), cropped) < FIRST_FRAME_MEAN_TOLERANCE
    frames = saved_video(comfyui, prompt, entry)
    assert len(frames) == task["num_frames"] == 96
    assert frames[0].shape == (480, 848, 3)


def test_chained_extension_starts_clip_2_from_clip_1s_last_frame_and_joins_them(
        comfyui, comfyui_emulator, object_info):
    prompt = prepare(comfyui, object_info, "magi1_chained_extension")
    add_preview(prompt, "clip1_last", [node_id(prompt, "Magi1LoadVideo", "Clip 1: Load Video"), 1])
    entry = comfyui.server.run(prompt, timeout=RUN_TIMEOUT_S)

    clip1, clip2 = comfyui_emulator.tasks()  # in submission order
    assert len(submits(comfyui_emulator)) == 2
    clip1_last = read_rgb(output_files(comfyui, entry, "clip1_last")[0])
    clip2_first = decode_rgb(comfyui_emulator.uploaded_bytes(clip2["image"]))
    assert max_abs_diff(clip2_first, clip1_last) <= SAME_FRAME_MAX_TOLERANCE

    frames = saved_video(comfyui, prompt, entry)
    # Clip 2's first frame repeats clip 1's last one: the example skips it (skip_first_frames=1).
    assert len(frames) == clip1["num_frames"] + clip2["num_frames"] - 1
    assert mean_abs_diff(frames[0], videogen.cover_crop(read_rgb(FIRST_FRAME), 848, 480)) \
        < FIRST_FRAME_MEAN_TOLERANCE + 2  # encoded twice: by the emulator, then by SaveVideo


def test_a_batch_of_two_images_is_two_tasks_with_their_frames_in_order(
        comfyui, comfyui_emulator, object_info):
    shutil.copyfile(FIRST_FRAME, comfyui.server.input_dir / FIRST_FRAME.name)
    prompt = {
        "image": {"class_type": "LoadImage", "inputs": {"image": FIRST_FRAME.name}},
        "inverted": {"class_type": "ImageInvert", "inputs": {"image": ["image", 0]}},
        "batch": {"class_type": "ImageBatch", "inputs": {"image1": ["image", 0], "image2": ["inverted", 0]}},
        "submit": {"class_type": "Magi1Submit", "inputs": {
            "prompt": "Two first frames, two tasks.", "seed": secrets.randbelow(2**31 - 1),
            "image": ["batch", 0], "resolution": "480p"}},
        "poll": {"class_type": "Magi1Poll", "inputs": {"task": ["submit", 0],
                                                       "poll_interval_s": TEST_POLL_INTERVAL_S}},
        "load": {"class_type": "Magi1LoadVideo", "inputs": {"video_url": ["poll", 0]}},
        "save": {"class_type": "SaveVideo", "inputs": {"video": ["load", 4], "filename_prefix": "video/batch",
                                                       "format": "auto", "codec": "auto"}},
    }
    entry = comfyui.server.run(prompt, timeout=RUN_TIMEOUT_S)

    assert len(comfyui_emulator.tasks()) == 2 and len(submits(comfyui_emulator)) == 2
    # The two submits run concurrently, so the emulator may see them in either order; the pack
    # keeps the batch's order, which its saved videos (magi1_<task id>.mp4, in the Poll node's
    # preview) show.
    saved = [path.name for path in output_files(comfyui, entry, "poll")]
    tasks = sorted(comfyui_emulator.tasks(),
                   key=lambda task: next(i for i, name in enumerate(saved) if task["id"] in name))
    original = read_rgb(FIRST_FRAME)
    assert np.array_equal(decode_rgb(comfyui_emulator.uploaded_bytes(tasks[0]["image"])), original)
    assert np.array_equal(decode_rgb(comfyui_emulator.uploaded_bytes(tasks[1]["image"])), 255 - original)

    (path,) = output_files(comfyui, entry, "save")
    frames = read_video(path)
    assert len(frames) == tasks[0]["num_frames"] + tasks[1]["num_frames"]
    crop = videogen.cover_crop(original, 848, 480)
    boundary = tasks[0]["num_frames"]
    assert mean_abs_diff(frames[0], crop) < FIRST_FRAME_MEAN_TOLERANCE + 2
    assert mean_abs_diff(frames[boundary], 255 - crop) < FIRST_FRAME_MEAN_TOLERANCE + 2
