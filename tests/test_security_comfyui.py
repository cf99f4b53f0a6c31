"""Issue 9's attacks where they go through a real ComfyUI 0.3.75: a shared workflow whose
Magi1LoadVideo names a file outside the allowed folders, a web page posting to the key route,
a prompt of invisible characters. The library-level variants are in test_security.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from tools.comfyui_harness import PromptFailed, PromptRejected
from loopback_http import LoopbackHTTP, redirect_to

KEY_ROUTE = "/magi1/api_key"
_seeds = iter(range(7000, 10**6))


@pytest.fixture
def env(comfyui):
    comfyui.emulator.reset()
    comfyui.server.clear_cache()
    return comfyui


def write_clip(path: Path, frames: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (32, 32))
    for index in range(frames):
        writer.write(np.full((32, 32, 3), 30 + index * 40, np.uint8))
    writer.release()
    return path


def load_graph(video_url: str, *, prefix: str = "leak") -> dict:
    """Magi1LoadVideo → SaveImage: the shape of the attack (frames saved, then fetched via /view)."""
    cap = next(_seeds) % 1000 + 1000  # a fresh input each time, so ComfyUI's cache never answers
    return {
        "load": {"class_type": "Magi1LoadVideo", "inputs": {"video_url": video_url, "frame_load_cap": cap}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["load", 0], "filename_prefix": prefix}},
    }


def failure(env, video_url: str) -> str:
    with pytest.raises(PromptFailed) as caught:
        env.server.run(load_graph(video_url), timeout=60)
    error = caught.value.error
    assert error is not None and error["node_type"] == "Magi1LoadVideo", caught.value
    return error["exception_message"]


@pytest.fixture
def outside(env) -> Path:
    """A private folder beside ComfyUI's own: a text key FFmpeg would decode, and a real video."""
    folder = env.server.base_dir / "private"
    folder.mkdir(exist_ok=True)
    (folder / "id_rsa.asc").write_text("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBGV0\n")
    write_clip(folder / "secret.mp4")
    return folder


def leaked(env) -> list[Path]:
    return list(env.server.output_dir.glob("leak*.png"))


# --- local files -------------------------------------------------------------------------------------------
def test_a_workflow_reading_a_text_file_outside_the_allowed_folders_is_refused(env, outside):
    message = failure(env, str(outside / "id_rsa.asc"))
    assert "input, output or temp" in message and "BEGIN" not in message
    assert leaked(env) == []


@pytest.mark.parametrize("path", ["../private/secret.mp4", "{base}/input/../private/secret.mp4", "{base}/private/secret.mp4",
                                  '"{base}/private/secret.mp4"', "~/.ssh/id_rsa", "/etc/passwd"])
def test_a_workflow_reading_any_path_outside_is_refused(env, outside, path):
    failure(env, path.format(base=env.server.base_dir))
    assert leaked(env) == []


def test_a_symlink_in_the_input_folder_pointing_outside_is_refused(env, outside):
    link = env.server.input_dir / "holiday.mp4"
    link.unlink(missing_ok=True)
    link.symlink_to(outside / "id_rsa.asc")
    try:
        failure(env, "holiday.mp4")
    finally:
        link.unlink()
    assert leaked(env) == []


def test_an_hls_playlist_named_like_a_video_in_input_is_refused(env, outside):
    """FFmpeg reads by content: with opencv-python 4.8 this playlist decoded the private video."""
    playlist = env.server.input_dir / "playlist.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{outside}/secret.mp4\n#EXT-X-ENDLIST\n")
    try:
        message = failure(env, "playlist.mp4")
    finally:
        playlist.unlink()
    assert "input, output or temp" in message
    assert leaked(env) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LocalHost"])
def test_a_workflow_cannot_make_the_pack_fetch_from_comfyui_itself(env, host):
    """Any route of ComfyUI or of another pack (some serve files from any path) would bypass the
    local-folder rule: ComfyUI's own port on a loopback address is refused like any refused URL."""
    write_clip(env.server.input_dir / "mine.mp4", frames=4)
    message = failure(env, f"http://{host}:{env.server.port}/api/view?filename=mine.mp4&type=input")
    assert "ComfyUI itself" in message
    assert leaked(env) == []


def test_a_redirect_to_comfyui_itself_is_refused(env):
    write_clip(env.server.input_dir / "mine.mp4", frames=4)
    with LoopbackHTTP() as other:
        other.route("/clip.mp4", redirect_to(f"{env.server.url}/api/view?filename=mine.mp4&type=input"))
        message = failure(env, other.url + "/clip.mp4")
    assert "ComfyUI itself" in message
    assert leaked(env) == []


def test_a_missing_file_and_a_refused_one_get_the_same_answer(env, outside):
    exists, missing = str(outside / "secret.mp4"), str(outside / "absent.mp4")
    assert failure(env, exists).replace(exists, "<path>") == failure(env, missing).replace(missing, "<path>")


def test_a_video_in_the_input_folder_loads_by_name_or_quoted_path(env):
    clip = write_clip(env.server.input_dir / "mine.mp4", frames=4)
    for source in ("mine.mp4", f'"{clip}"'):
        entry = env.server.run(load_graph(source, prefix="allowed"), timeout=60)
        assert entry["status"]["status_str"] == "success"
    assert len(list(env.server.output_dir.glob("allowed*.png"))) == 8


# --- the key route -----------------------------------------------------------------------------------------
def own_page(server) -> dict:
    return {"Origin": server.url, "X-Magi1-Request": "1"}


def key_file(env) -> Path:
    return env.server.user_dir / "__magi1" / "wavespeed_api_key"


ATTACKER_KEY = "sk-attacker-" + "a" * 24 + "6666"


@pytest.mark.parametrize("name", [
    "a foreign Origin", "Origin null (sandboxed iframe, file://)", "no Origin", "DNS rebinding",
    "text/plain (a simple request)", "form-encoded", "without the custom header",
])
def test_a_cross_site_request_cannot_replace_the_key(env, name):
    server = env.server
    host = f"127.0.0.1:{server.port}"
    json_body = {"data": json.dumps({"key": ATTACKER_KEY}), "headers": {"Content-Type": "application/json"}}
    cases = {
        "a foreign Origin": ({**own_page(server), "Origin": "http://evil.example"}, json_body),
        "Origin null (sandboxed iframe, file://)": ({**own_page(server), "Origin": "null"}, json_body),
        "no Origin": ({"X-Magi1-Request": "1"}, json_body),
        "DNS rebinding": ({**own_page(server), "Host": f"evil.example:{server.port}",
                           "Origin": f"http://evil.example:{server.port}"}, json_body),
        "text/plain (a simple request)": (own_page(server), {"data": json.dumps({"key": ATTACKER_KEY}),
                                                             "headers": {"Content-Type": "text/plain"}}),
        "form-encoded": (own_page(server), {"data": {"key": ATTACKER_KEY}, "headers": {}}),
        "without the custom header": ({"Origin": server.url, "Host": host}, json_body),
    }
    headers, body = cases[name]
    answer = server.post(KEY_ROUTE, data=body["data"], headers={**body["headers"], **headers})
    assert answer.status_code in (400, 403) and ATTACKER_KEY not in answer.text
    assert not key_file(env).exists()
    if name == "DNS rebinding":
        read = server.get(KEY_ROUTE, headers={"Host": f"evil.example:{server.port}"})
        assert read.status_code == 403 and "last4" not in read.text


def test_a_cross_site_delete_cannot_remove_the_key(env):
    server = env.server
    assert server.post(KEY_ROUTE, json={"key": ATTACKER_KEY}, headers=own_page(server)).status_code == 200
    try:
        for headers in ({"Origin": "null", "X-Magi1-Request": "1"}, {"Origin": server.url}, {}):
            assert server._http.delete(server.url + KEY_ROUTE, headers=headers, timeout=10).status_code == 403
            assert key_file(env).exists()
    finally:
        server._http.delete(server.url + KEY_ROUTE, headers=own_page(server), timeout=10)
    assert not key_file(env).exists()


@pytest.mark.parametrize("key", ["sk-line-one-123456\nsk-line-two-654321", "sk-zero\u200bwidth-space-4242",
                                 "sk-bidi\u202emark-8888-abcdef", "sk-tab\there-1234567"])
def test_a_malformed_key_is_refused_and_never_echoed_or_logged(env, key):
    answer = env.server.post(KEY_ROUTE, json={"key": key}, headers=own_page(env.server))
    assert answer.status_code == 400 and "character" in answer.json()["error"]
    pieces = re.split("[\n\u200b\u202e\t]", key)
    log = env.server.log_text()
    for piece in pieces:
        assert piece not in answer.text and piece not in log
    assert not key_file(env).exists()


def test_comfyuis_own_page_can_still_set_and_remove_the_key(env):
    server = env.server
    try:
        answer = server.post(KEY_ROUTE, json={"key": ATTACKER_KEY}, headers=own_page(server))
        assert answer.status_code == 200 and answer.json()["stored"] is True and ATTACKER_KEY not in answer.text
        assert key_file(env).read_text() == ATTACKER_KEY
    finally:
        assert server._http.delete(server.url + KEY_ROUTE, headers=own_page(server), timeout=10).status_code == 200


# --- prompts -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["\x00\x00\x00", "\u200b\u200d\ufeff", "\u202e \u2066"])
def test_an_invisible_prompt_fails_before_anything_is_uploaded_or_billed(env, prompt):
    graph = {
        "img": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "submit": {"class_type": "Magi1Submit", "inputs": {"prompt": prompt, "seed": next(_seeds), "image": ["img", 0]}},
        "poll": {"class_type": "Magi1Poll", "inputs": {"task": ["submit", 0]}},
    }
    # Refused when queued (Magi1Submit's validate_inputs), before any node runs.
    with pytest.raises(PromptRejected) as caught:
        env.server.run(graph, timeout=60)
    assert "invisible" in json.dumps(caught.value.details["node_errors"]["submit"])
    assert [call for call in env.emulator.journal() if call["route"] in ("submit", "upload", "upload_binary", "upload_put")] == []


# --- a malformed key from a hand-edited key file ------------------------------------------------------------
@pytest.mark.parametrize("key", [f"sk-line-one-{'1' * 12}\nsk-line-two-{'2' * 12}",
                                 f"sk-zero-width-{'3' * 12}\u200b{'4' * 12}"])
def test_a_malformed_key_in_the_key_file_is_a_clear_error_shown_nowhere(keyless_comfyui, key):
    server = keyless_comfyui
    private = server.user_dir / "__magi1"
    private.mkdir(mode=0o700, exist_ok=True)
    (private / "wavespeed_api_key").write_text(key, encoding="utf-8")
    graph = {
        "submit": {"class_type": "Magi1Submit", "inputs": {"prompt": "a kite", "seed": next(_seeds)}},
        "poll": {"class_type": "Magi1Poll", "inputs": {"task": ["submit", 0]}},
    }
    with pytest.raises(PromptFailed) as caught:
        server.run(graph, timeout=60)
    message = caught.value.error["exception_message"]
    assert "key file" in message and ("line break" in message or "U+200B" in message)
    assert "UnicodeEncodeError" not in json.dumps(caught.value.error)
    places = [json.dumps(caught.value.entry), server.get("/history").text, server.log_text(),
              server.get(KEY_ROUTE).text]
    for piece in re.split("[\n\u200b]", key):
        assert all(piece not in text for text in places)


@pytest.fixture(scope="module")
def keyless_comfyui(comfyui, tmp_path_factory):
    """A second ComfyUI without WAVESPEED_API_KEY, so the key file is the one used."""
    from tools.comfyui_harness import ComfyUIServer

    with ComfyUIServer(tmp_path_factory.mktemp("keyless"),
                       env={"WAVESPEED_BASE_URL": comfyui.emulator.base_url}) as server:
        yield server
