"""The pack on both ComfyUI versions (0.3.75 and 0.33.0), and what differs between them.

Each test here runs once per version (the `comfyui` fixture is parametrized). The nodes moved
from the V1 to the V3 schema; tests/fixtures/ keeps what the V1 nodes were (their /object_info on
0.3.75, the three example workflows as they were saved, and one API-format prompt), so that
"unchanged" is checked against the real thing, not against a description of it.

Differences between the versions the pack meets, and where each is handled:
- `ComfyExtension.on_load` is awaited by 0.33.0 and never called by 0.3.75: the pack's start-up
  step (the examples' first frame into the input folder) runs in comfy_glue.make_extension(),
  called from `comfy_entrypoint()`, which both call
  (test_a_fresh_comfyui_has_the_examples_first_frame_in_its_input_folder).
- 0.33.0's /object_info lists seven more keys per node, all at their empty defaults for these
  nodes (EXTRA_NODE_KEYS): nothing to handle (test_object_info_is_the_v1_nodes_apart_from_what_v3_adds).
- 0.33.0's core SaveVideo (used by the chained example) has a `codec` of type
  COMFY_DYNAMICCOMBO_V3 where 0.3.75 has a combo: the same widget value ("auto") in the saved
  workflow; the harness's UI → API converter reads it as a widget (tools/comfyui_harness.py,
  WIDGET_TYPES), as the front end does (test_a_workflow_saved_with_the_v1_nodes_runs_unchanged).
- The front ends differ (0.3.75's 1.3x, 0.33.0's 1.49.6): the template browser, the node search
  (a node picked there hangs on the pointer until a click places it), the node library, the Run
  button, the settings dialog and where a saved workflow is stored. web/magi1.js needed no change
  (its hooks, setting and preview note work on both: tests/test_browser.py runs on both); what
  the tests drive is found on either in tests/browser_support.py.
- 0.33.0 locks its SQLite database: every server gets its own --database-url (tools/comfyui_harness.py).
- 0.33.0 imports torchaudio at start-up: its venv takes torch 2.9.1 (scripts/bootstrap.sh).
"""
from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path

import pytest

from tools.comfyui_harness import workflow_to_prompt

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NODE_TYPES = ("Magi1Submit", "Magi1Poll", "Magi1LoadVideo")
V1_OBJECT_INFO = json.loads((FIXTURES / "v1_object_info.json").read_text(encoding="utf-8"))
V1_WORKFLOWS = sorted((FIXTURES / "v1_workflows").glob("*.json"))
V1_API_PROMPT = json.loads((FIXTURES / "v1_api_prompt.json").read_text(encoding="utf-8"))
FIRST_FRAME_NAME = "magi1_first_frame.png"
RUN_TIMEOUT_S = 180

# What the V3 schema adds to a node's V1 view, on both versions: these flags, and the hidden
# inputs of an output node.
V3_NODE_KEYS = {"api_node": False, "deprecated": False, "experimental": False}
V3_OUTPUT_NODE_HIDDEN = ("prompt", "extra_pnginfo")
# What 0.33.0 adds to every node's entry, at their values for these nodes.
EXTRA_NODE_KEYS = {
    "0.3.75": {},
    "0.33.0": {"dev_only": False, "essentials_category": None, "has_intermediate_output": False,
               "is_input_list": False, "output_matchtypes": None, "price_badge": None, "search_aliases": None},
}
# The contract's one addition to the V1 nodes: Magi1Poll's `video` after `video_url`.
POLL_VIDEO_OUTPUT = ("VIDEO", "video")


def as_v1(node_type: str, info: dict, version: str) -> dict:
    """A V3 node's /object_info entry in the V1 nodes' terms: V3's and the version's own additions
    checked (asserted) and taken out, combos written as V1 did ([[choices], {...}])."""
    info = copy.deepcopy(info)
    for key, value in {**V3_NODE_KEYS, **EXTRA_NODE_KEYS[version]}.items():
        assert info.pop(key) == value, (node_type, key)
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            if spec[0] == "COMBO":
                options = dict(spec[1])
                assert options.pop("multiselect") is False, (node_type, name)  # V3 says so, V1 did not
                info["input"][section][name] = [options.pop("options"), options]
    if info["output_node"]:
        hidden = info["input"]["hidden"]
        for name in V3_OUTPUT_NODE_HIDDEN:
            hidden.pop(name)
            info["input_order"]["hidden"].remove(name)
        if not hidden:
            del info["input"]["hidden"], info["input_order"]["hidden"]
        for name, spec in hidden.items():  # V3 writes a hidden input as [type], V1 as type
            hidden[name] = spec[0] if isinstance(spec, list) else spec
    return info


def v1_with_contract_additions(node_type: str) -> dict:
    info = copy.deepcopy(V1_OBJECT_INFO[node_type])
    if node_type == "Magi1Poll":
        kind, name = POLL_VIDEO_OUTPUT
        info["output"].append(kind)
        info["output_name"].append(name)
        info["output_is_list"].append(False)
        info["output_tooltips"].append(None)  # compared apart: the new output's own tooltip
    return info


@pytest.fixture(scope="module")
def object_info(comfyui) -> dict:
    return comfyui.server.object_info()


@pytest.mark.parametrize("node_type", NODE_TYPES)
def test_object_info_is_the_v1_nodes_apart_from_what_v3_adds(comfyui, object_info, node_type):
    seen = as_v1(node_type, object_info[node_type], comfyui.version)
    expected = v1_with_contract_additions(node_type)
    if node_type == "Magi1Poll":
        assert seen["output_tooltips"][-1], "Magi1Poll's video output has a tooltip"
        seen["output_tooltips"][-1] = None
    assert seen == expected


def test_a_fresh_comfyui_has_the_examples_first_frame_in_its_input_folder(comfyui):
    # The pack's start-up put it there (on_load would not run on 0.3.75); nothing else copies it.
    placed = comfyui.server.input_dir / FIRST_FRAME_NAME
    original = Path(__file__).resolve().parent.parent / "examples" / FIRST_FRAME_NAME
    assert placed.read_bytes() == original.read_bytes()
    listed = comfyui.server.object_info("LoadImage")["input"]["required"]["image"]
    choices = listed[1]["options"] if listed[0] == "COMBO" else listed[0]
    assert FIRST_FRAME_NAME in choices, "LoadImage offers it, so the template's widget value is valid"


def _fresh_seeds(prompt: dict) -> dict:
    for node in prompt.values():
        if node["class_type"] == "Magi1Submit":
            node["inputs"]["seed"] = secrets.randbelow(2**31 - 1)
        elif node["class_type"] == "Magi1Poll":
            node["inputs"]["poll_interval_s"] = 0.2
    return prompt


@pytest.mark.parametrize("path", V1_WORKFLOWS, ids=lambda path: path.stem)
def test_a_workflow_saved_with_the_v1_nodes_runs_unchanged(comfyui, object_info, path):
    comfyui.emulator.reset()
    prompt = _fresh_seeds(workflow_to_prompt(json.loads(path.read_text(encoding="utf-8")), object_info))
    entry = comfyui.server.run(prompt, timeout=RUN_TIMEOUT_S)
    assert entry["status"]["status_str"] == "success"
    submits = [e for e in comfyui.emulator.journal() if e["route"] == "submit"]
    assert len(submits) == sum(node["class_type"] == "Magi1Submit" for node in prompt.values())


def test_an_api_prompt_made_for_the_v1_nodes_runs_unchanged(comfyui):
    comfyui.emulator.reset()
    entry = comfyui.server.run(_fresh_seeds(copy.deepcopy(V1_API_PROMPT)), timeout=RUN_TIMEOUT_S)
    assert entry["status"]["status_str"] == "success"
    assert len([e for e in comfyui.emulator.journal() if e["route"] == "submit"]) == 2
