"""magi1.comfy_glue, outside ComfyUI (fallbacks) and inside a real ComfyUI (0.3.75 and 0.33.0).

Inside ComfyUI a tiny probe pack, written into a temporary folder, drives the glue the way the
MAGI-1 nodes do: async nodes waiting with NodeProgress, Cancel, previews, routes, the private
folder. The last test checks that the real pack registers its three nodes.
"""
from __future__ import annotations

import ast
import stat
import time
import uuid
from pathlib import Path

import pytest

from tools.comfyui_harness import (
    REPO_ROOT,
    ComfyUIServer,
    PromptInterrupted,
    status_message,
    workflow_to_prompt,
)
from magi1 import comfy_glue

# --- outside ComfyUI ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_pending_interrupt():
    yield
    comfy_glue._standalone_interrupt.clear()


@pytest.fixture
def standalone_dirs(tmp_path, monkeypatch):
    for name in ("OUTPUT", "TEMP", "USER"):
        monkeypatch.setenv(f"MAGI1_{name}_DIR", str(tmp_path / name.lower()))
    return tmp_path


def test_outside_comfyui_the_glue_imports_and_reports_it():
    assert comfy_glue.IN_COMFYUI is False


def test_outside_comfyui_directories_come_from_the_environment(standalone_dirs):
    assert comfy_glue.output_directory() == standalone_dirs / "output"
    assert comfy_glue.temp_directory() == standalone_dirs / "temp"
    assert comfy_glue.user_directory() == standalone_dirs / "user"


def test_outside_comfyui_directories_default_to_the_working_directory(tmp_path, monkeypatch):
    for name in ("OUTPUT", "TEMP", "USER"):
        monkeypatch.delenv(f"MAGI1_{name}_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert comfy_glue.output_directory() == tmp_path.resolve() / "output"
    assert comfy_glue.user_directory() == tmp_path.resolve() / "user"


def test_private_directory_is_a_system_user_folder_readable_only_by_its_owner(standalone_dirs):
    private = comfy_glue.private_directory()
    assert private == standalone_dirs / "user" / "__magi1"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_private_directory_tightens_a_folder_created_too_open(standalone_dirs):
    loose = standalone_dirs / "user" / "__magi1"
    loose.mkdir(parents=True)
    loose.chmod(0o755)
    assert stat.S_IMODE(comfy_glue.private_directory().stat().st_mode) == 0o700


def test_provide_input_file_copies_into_the_input_folder_once_and_keeps_a_users_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGI1_INPUT_DIR", str(tmp_path / "input"))
    source = tmp_path / "frame.png"
    source.write_bytes(b"ours")
    placed = comfy_glue.provide_input_file(source)
    assert placed == (tmp_path / "input" / "frame.png").resolve() and placed.read_bytes() == b"ours"
    placed.write_bytes(b"the user's own")
    assert comfy_glue.provide_input_file(source) == placed
    assert placed.read_bytes() == b"the user's own"
    assert [p.name for p in placed.parent.iterdir()] == ["frame.png"]  # no partial file left


def test_outside_comfyui_cancel_is_a_local_flag_cleared_by_the_raise():
    comfy_glue.throw_if_interrupted()  # nothing pending: no raise
    comfy_glue._standalone_interrupt.set()  # what Cancel would set
    with pytest.raises(comfy_glue.INTERRUPT_EXCEPTION):
        comfy_glue.throw_if_interrupted()
    assert not comfy_glue._standalone_interrupt.is_set()
    comfy_glue.throw_if_interrupted()  # cleared by the raise: no second raise


def test_node_progress_clamps_keeps_its_text_and_is_a_cancel_checkpoint():
    progress = comfy_glue.NodeProgress("7", total=4)
    progress.update(9, "almost")
    assert (progress.value, progress.text) == (4, "almost")
    comfy_glue._standalone_interrupt.set()
    with pytest.raises(comfy_glue.INTERRUPT_EXCEPTION):
        progress.update(1)


def test_outside_comfyui_video_events_and_routes_are_no_ops(tmp_path):
    registered = []
    assert comfy_glue.video_from_file(tmp_path / "clip.mp4") is None
    comfy_glue.send_event("magi1.test", {"x": 1})
    assert comfy_glue.add_routes(registered.append) is False
    assert registered == []


def test_output_preview_names_files_by_folder_type_and_subfolder(standalone_dirs):
    output, temp = comfy_glue.output_directory(), comfy_glue.temp_directory()
    ui = comfy_glue.output_preview([output / "magi1" / "a.mp4", output / "b.mp4", temp / "c.mp4"])
    assert ui == {
        "images": [
            {"filename": "a.mp4", "subfolder": "magi1", "type": "output"},
            {"filename": "b.mp4", "subfolder": "", "type": "output"},
            {"filename": "c.mp4", "subfolder": "", "type": "temp"},
        ],
        "animated": (True,),
    }


def test_output_preview_skips_files_comfyui_cannot_serve(standalone_dirs):
    assert comfy_glue.output_preview([standalone_dirs / "elsewhere" / "a.mp4"]) == {}


COMFYUI_MODULES = ("comfy", "comfy_api", "comfy_execution", "folder_paths", "server", "execution")


def test_only_comfy_glue_imports_comfyui():
    offenders = []
    sources = [REPO_ROOT / "__init__.py", *(REPO_ROOT / "magi1").rglob("*.py"),
               *(REPO_ROOT / "nodes").rglob("*.py")]
    for source in sources:
        if not source.is_file() or source.name == "comfy_glue.py":
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{source.relative_to(REPO_ROOT)}: {name}" for name in names
                          if name.split(".")[0] in COMFYUI_MODULES]
    assert offenders == []


# --- the UI → API workflow converter --------------------------------------------------------------
PROBE_OBJECT_INFO = {
    "Magi1ProbeWait": {
        "input": {"required": {"seconds": ["FLOAT", {"default": 1.0}], "label": ["STRING", {}]},
                  "optional": {"seed": ["INT", {"default": 0}], "tail": ["STRING", {"forceInput": True}]},
                  "hidden": {"unique_id": "UNIQUE_ID"}},
        "input_order": {"required": ["seconds", "label"], "optional": ["seed", "tail"]},
        "output": ["STRING"],
    },
}


def test_workflow_to_prompt_reads_widgets_links_primitives_reroutes_notes_and_bypass():
    workflow = {
        "nodes": [
            {"id": 1, "type": "Magi1ProbeWait", "mode": 0, "widgets_values": [0.5, "first", 42, "fixed"],
             "inputs": [], "outputs": [{"name": "STRING", "type": "STRING", "links": [1]}]},
            {"id": 2, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 1}],
             "outputs": [{"type": "STRING", "links": [2]}]},
            {"id": 3, "type": "Magi1ProbeWait", "mode": 4, "widgets_values": [9.0, "bypassed", 0, "fixed"],
             "inputs": [{"name": "tail", "type": "STRING", "link": 2}],
             "outputs": [{"name": "STRING", "type": "STRING", "links": [3]}]},
            {"id": 4, "type": "Magi1ProbeWait", "mode": 0, "widgets_values": [0.25, "from primitive", 7, "randomize"],
             "inputs": [{"name": "tail", "type": "STRING", "link": 3},
                        {"name": "label", "type": "STRING", "link": 4, "widget": {"name": "label"}}],
             "outputs": []},
            {"id": 5, "type": "PrimitiveNode", "mode": 0, "widgets_values": ["from primitive"],
             "outputs": [{"type": "STRING", "links": [4], "widget": {"name": "label"}}]},
            {"id": 6, "type": "Note", "mode": 0, "widgets_values": ["a note"]},
            {"id": 7, "type": "Magi1ProbeWait", "mode": 2, "widgets_values": [1.0, "muted", 0, "fixed"]},
        ],
        "links": [[1, 1, 0, 2, 0, "STRING"], [2, 2, 0, 3, 0, "STRING"], [3, 3, 0, 4, 0, "STRING"],
                  [4, 5, 0, 4, 1, "STRING"]],
    }
    prompt = workflow_to_prompt(workflow, PROBE_OBJECT_INFO)
    assert sorted(prompt) == ["1", "4"]
    assert prompt["1"]["inputs"] == {"seconds": 0.5, "label": "first", "seed": 42}
    assert prompt["4"]["inputs"] == {"seconds": 0.25, "label": "from primitive", "seed": 7, "tail": ["1", 0]}


# --- inside a real ComfyUI: the probe pack --------------------------------------------------------
PROBE_PACK = '''
"""Probe pack written by tests/test_comfyui_glue.py: drives magi1.comfy_glue inside ComfyUI."""
import asyncio
import sys
import time

sys.path.insert(0, {repo!r})
from magi1 import comfy_glue as glue  # noqa: E402


class ProbeWait:
    CATEGORY = "magi1-probe"
    FUNCTION = "wait"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"seconds": ("FLOAT", {{"default": 1.0, "min": 0.0, "max": 600.0, "step": 0.01}}),
                             "label": ("STRING", {{"default": "a"}})}},
                "optional": {{"seed": ("INT", {{"default": 0}}), "tail": ("STRING", {{"forceInput": True}})}},
                "hidden": {{"unique_id": "UNIQUE_ID"}}}}

    async def wait(self, seconds, label, unique_id, seed=0, tail=""):
        start = time.monotonic()
        steps = max(int(round(seconds / 0.05)), 1)
        progress = glue.NodeProgress(unique_id, steps)
        for step in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            progress.update(step, f"{{label}}: step {{step}}/{{steps}}")
        return {{"ui": {{"timing": [start, time.monotonic()], "context_node": [glue.current_node_id()]}},
                "result": (label + tail,)}}


class ProbeGlue:
    CATEGORY = "magi1-probe"
    FUNCTION = "probe"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"seed": ("INT", {{"default": 0}})}}, "hidden": {{"unique_id": "UNIQUE_ID"}}}}

    def probe(self, seed, unique_id):
        import cv2
        import numpy as np

        video_path = glue.output_directory() / "magi1-probe" / f"clip_{{seed}}.mp4"
        video_path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (32, 24))
        for shade in range(4):
            writer.write(np.full((24, 32, 3), shade * 60, np.uint8))
        writer.release()
        private = glue.private_directory()
        (private / "secret.txt").write_text("probe-secret")
        glue.send_event("magi1_probe.hello", {{"node": unique_id}}, to_current_client=True)
        video = glue.video_from_file(video_path)
        ui = {{
            "in_comfyui": [glue.IN_COMFYUI],
            "directories": [str(glue.output_directory()), str(glue.temp_directory()),
                            str(glue.user_directory()), str(private)],
            "private_mode": [oct(private.stat().st_mode & 0o777)],
            "video": [type(video).__name__, list(video.get_dimensions())],
            "interrupt_exception": [glue.INTERRUPT_EXCEPTION.__module__ + "." + glue.INTERRUPT_EXCEPTION.__name__],
            "routes_added": [ROUTES_ADDED, BROKEN_ROUTES_ADDED],
        }}
        ui.update(glue.output_preview([video_path]))
        return {{"ui": ui, "result": ()}}


def _register(routes):
    from aiohttp import web

    @routes.get("/magi1_probe/ping")
    async def ping(request):
        return web.json_response({{"pong": True}})


def _register_broken(routes):
    raise RuntimeError("a broken route registration")


ROUTES_ADDED = glue.add_routes(_register)
BROKEN_ROUTES_ADDED = glue.add_routes(_register_broken)

NODE_CLASS_MAPPINGS = {{"Magi1ProbeWait": ProbeWait, "Magi1ProbeGlue": ProbeGlue}}
'''


def _tree_snapshot(root: Path) -> set[tuple[str, int, int]]:
    return {(str(p.relative_to(root)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory, comfyui_version):
    pack = tmp_path_factory.mktemp("probe_pack") / "magi1_probe"
    pack.mkdir()
    (pack / "__init__.py").write_text(PROBE_PACK.format(repo=str(REPO_ROOT)))
    tree_before = _tree_snapshot(comfyui_version.comfy_dir)
    with ComfyUIServer(tmp_path_factory.mktemp("comfyui_probe"), packs={"magi1_probe": pack},
                       version=comfyui_version) as server:
        server.tree_before = tree_before
        yield server


def _wait_node(seconds: float, label: str) -> dict:
    return {"class_type": "Magi1ProbeWait", "inputs": {"seconds": seconds, "label": label}}


def test_comfyui_starts_with_the_probe_in_its_own_directories(probe_server):
    assert "Magi1ProbeWait" in probe_server.object_info()
    assert f"seconds: {probe_server.custom_nodes_dir / 'magi1_probe'}" in probe_server.log_text()
    assert str(probe_server.base_dir) in probe_server.log_text()  # our --output-directory etc.
    print(f"ComfyUI answered /object_info {probe_server.start_seconds:.1f} s after launch")


def test_two_async_nodes_wait_at_the_same_time(probe_server):
    label = uuid.uuid4().hex  # a fresh input: ComfyUI would serve cached outputs otherwise
    entry = probe_server.run({"1": _wait_node(1.0, f"a{label}"), "2": _wait_node(1.0, f"b{label}")})
    (start_a, end_a), (start_b, end_b) = (entry["outputs"][n]["timing"] for n in ("1", "2"))
    assert start_b < end_a and start_a < end_b, "the second wait began only after the first ended"
    assert max(end_a, end_b) - min(start_a, start_b) < 1.7


def test_progress_and_status_text_reach_the_right_node_while_both_wait(probe_server):
    label = uuid.uuid4().hex
    with probe_server.websocket() as ws:
        entry = probe_server.run({"1": _wait_node(1.0, f"a{label}"), "2": _wait_node(0.6, f"b{label}")},
                                 client_id=ws.client_id)
        ws.wait_for(lambda kind, data: kind == "executing" and data.get("node") is None)
    assert [entry["outputs"][n]["context_node"] for n in ("1", "2")] == [["1"], ["2"]]
    progress = [p for p in ws.of_type("progress") if p["prompt_id"] == entry["prompt"][1]]
    assert {(p["node"], p["max"]) for p in progress} == {("1", 20), ("2", 12)}
    texts = ws.of_type("progress_text")
    assert {"node": "1", "text": f"a{label}: step 20/20"} in texts
    assert {"node": "2", "text": f"b{label}: step 12/12"} in texts
    assert all(t["text"].startswith(("a" if t["node"] == "1" else "b") + label) for t in texts)


def test_cancel_during_an_async_wait_is_reported_as_interrupted_within_a_second(probe_server):
    label = uuid.uuid4().hex
    with probe_server.websocket() as ws:
        prompt_id = probe_server.queue({"1": _wait_node(60.0, f"long{label}"), "2": _wait_node(60.0, f"other{label}")},
                                       client_id=ws.client_id)
        ws.wait_for(lambda kind, data: kind == "progress_text" and data["node"] == "2")
        pressed = time.monotonic()
        probe_server.interrupt(prompt_id)
        with pytest.raises(PromptInterrupted) as raised:
            probe_server.wait(prompt_id, timeout=10)
        took = time.monotonic() - pressed
    print(f"Cancel → execution_interrupted in /history: {took:.2f} s")
    assert took < 1.0, f"Cancel took {took:.2f} s"
    assert status_message(raised.value.entry, "execution_interrupted")["node_type"] == "Magi1ProbeWait"
    assert status_message(raised.value.entry, "execution_error") is None
    # the interrupt flag does not leak into the next prompt
    probe_server.run({"1": _wait_node(0.1, f"after{label}")})


def test_glue_inside_comfyui_uses_comfyui_directories_video_and_preview(probe_server):
    seed = int(time.time())
    with probe_server.websocket() as ws:
        entry = probe_server.run({"1": {"class_type": "Magi1ProbeGlue", "inputs": {"seed": seed}}},
                                 client_id=ws.client_id)
        ws.wait_for(lambda kind, data: kind == "magi1_probe.hello" and data == {"node": "1"})
    ui = entry["outputs"]["1"]
    assert ui["in_comfyui"] == [True]
    assert ui["directories"] == [str(probe_server.output_dir), str(probe_server.temp_dir),
                                 str(probe_server.user_dir), str(probe_server.user_dir / "__magi1")]
    assert ui["private_mode"] == ["0o700"]
    assert ui["video"] == ["VideoFromFile", [32, 24]]
    assert ui["interrupt_exception"] == ["comfy.model_management.InterruptProcessingException"]
    assert ui["routes_added"] == [True, False]
    assert ui["images"] == [{"filename": f"clip_{seed}.mp4", "subfolder": "magi1-probe", "type": "output"}]
    assert ui["animated"] == [True]
    shown = probe_server.get("/view", params=ui["images"][0])
    assert shown.status_code == 200 and shown.content[4:8] == b"ftyp"


def test_routes_added_at_import_are_served_with_and_without_the_api_prefix(probe_server):
    for path in ("/magi1_probe/ping", "/api/magi1_probe/ping"):
        assert probe_server.get(path).json() == {"pong": True}


def test_private_directory_is_not_served_over_http(probe_server):
    probe_server.run({"1": {"class_type": "Magi1ProbeGlue", "inputs": {"seed": 1}}})
    assert (probe_server.user_dir / "__magi1" / "secret.txt").read_text() == "probe-secret"
    for path in ("/userdata/..%2F__magi1%2Fsecret.txt", "/api/userdata/..%2F__magi1%2Fsecret.txt",
                 "/userdata/%2E%2E%2F__magi1%2Fsecret.txt", "/userdata/__magi1%2Fsecret.txt"):
        answer = probe_server.get(path)
        assert answer.status_code >= 400 and b"probe-secret" not in answer.content, path
    for path in ("/userdata?dir=..&recurse=true", "/api/v2/userdata?path=.."):
        assert b"secret.txt" not in probe_server.get(path).content, path
    refused = probe_server.get("/userdata/secret.txt", headers={"comfy-user": "__magi1"})
    assert b"probe-secret" not in refused.content


def test_a_ui_workflow_converts_and_runs(probe_server):
    label = uuid.uuid4().hex
    workflow = {
        "nodes": [
            {"id": 10, "type": "Magi1ProbeWait", "mode": 0, "widgets_values": [0.1, label, 3, "fixed"],
             "outputs": [{"name": "STRING", "type": "STRING", "links": [1]}]},
            {"id": 11, "type": "Magi1ProbeWait", "mode": 0, "widgets_values": [0.1, "x", 0, "randomize"],
             "inputs": [{"name": "tail", "type": "STRING", "link": 1}]},
            {"id": 12, "type": "Note", "mode": 0, "widgets_values": ["hello"]},
        ],
        "links": [[1, 10, 0, 11, 0, "STRING"]],
    }
    prompt = workflow_to_prompt(workflow, probe_server.object_info())
    assert sorted(probe_server.run(prompt)["outputs"]) == ["10", "11"]


def test_the_shared_comfyui_tree_is_left_untouched(probe_server):
    assert _tree_snapshot(probe_server.comfy_dir) == probe_server.tree_before


# --- inside a real ComfyUI: the pack itself -------------------------------------------------------
MAGI1_NODES = ("Magi1Submit", "Magi1Poll", "Magi1LoadVideo")


def test_the_pack_registers_its_three_nodes_under_wavespeed(comfyui):
    link = comfyui.server.custom_nodes_dir / "comfyui-magi1"
    assert f"(IMPORT FAILED): {link}" not in comfyui.server.log_text(), comfyui.server.log_tail(120)
    info = comfyui.server.object_info()
    assert {name: info.get(name, {}).get("category") for name in MAGI1_NODES} == \
        dict.fromkeys(MAGI1_NODES, "WaveSpeed/MAGI-1")


def test_the_pack_loads_from_a_folder_outside_the_comfyui_tree(comfyui):
    link = comfyui.server.custom_nodes_dir / "comfyui-magi1"
    assert link.resolve() == REPO_ROOT
    assert comfyui.server.comfy_dir not in link.parents
    assert f": {link}" in comfyui.server.log_text()  # ComfyUI's "Import times for custom nodes"
