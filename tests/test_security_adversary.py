"""Attacks found by an adversarial review of the security layer (issue 9), one behaviour each.

Same rules as test_security.py: the real code paths, real HTTP on loopback (tests/loopback_http.py
for what a hostile or broken service would send), real files; every call bounded in time.
"""
from __future__ import annotations

import base64
import json
import socket
import threading
from pathlib import Path

import pytest

from loopback_http import LoopbackHTTP, redirect_to
from video_reference import write_clip
from magi1 import config, key_routes, params, pipeline
from magi1.client import Prediction, RetryPolicy, WaveSpeedClient
from magi1.download import download_video
from magi1.errors import (
    ApiError,
    DownloadError,
    InputError,
    Magi1Error,
    ServerError,
    SubmitUncertainError,
    UploadError,
)

TASK = "0123456789abcdef0123456789abcdef"
KEY = "sk-adversary-test-" + "k" * 20 + "9911"


def _whole_mp4() -> bytes:
    """A real (tiny) MP4: downloads check that its index and samples are all there."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return write_clip(Path(folder) / "clip.mp4").read_bytes()


MP4_BODY = _whole_mp4()
NETRC_USER, NETRC_PASSWORD = "alice", "hunter2-netrc"
NETRC_BASIC = "Basic " + base64.b64encode(f"{NETRC_USER}:{NETRC_PASSWORD}".encode()).decode()
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05)


def envelope(data: object) -> bytes:
    return json.dumps({"code": 200, "message": "success", "data": data}).encode()


def json_answer(data: object):
    return lambda seen: (200, {"Content-Type": "application/json"}, envelope(data))


def video_answer(seen):
    return 200, {"Content-Type": "video/mp4"}, MP4_BODY


def client_for(server: LoopbackHTTP) -> WaveSpeedClient:
    return WaveSpeedClient(server.url, config.ApiKey(KEY, "test"), retry=FAST, sleep=lambda s: None)


def result_error(server: LoopbackHTTP, answer) -> ApiError:
    """The named error get_result raises when the task's check is answered by `answer`."""
    server.route(f"/api/v3/predictions/{TASK}/result", answer)
    client = client_for(server)
    try:
        with pytest.raises(ApiError) as caught:
            client.get_result(TASK)
    finally:
        client.close()
    return caught.value


# === a ~/.netrc "default" entry: requests would send it to every host ==============================
@pytest.fixture
def netrc_default(tmp_path, monkeypatch):
    """A .netrc whose `default` entry applies to any host (requests reads $NETRC, else ~/.netrc)."""
    path = tmp_path / "netrc"
    path.write_text(f"default login {NETRC_USER} password {NETRC_PASSWORD}\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


def context(tmp_path: Path) -> pipeline.Context:
    return pipeline.Context(output_dir=tmp_path / "output", private_dir=tmp_path / "private")


def test_a_workflows_video_url_never_gets_the_users_netrc_password(netrc_default, elsewhere, tmp_path):
    elsewhere.route("/clip.mp4", video_answer)
    pipeline.save_video(context(tmp_path), elsewhere.url + "/clip.mp4")
    assert [seen.headers.get("Authorization") for seen in elsewhere.seen] == [None]


def test_a_redirected_download_never_gets_the_users_netrc_password(netrc_default, api, elsewhere, tmp_path):
    api.route("/clip.mp4", redirect_to(elsewhere.url + "/moved.mp4"))
    elsewhere.route("/moved.mp4", video_answer)
    download_video(api.url + "/clip.mp4", tmp_path / "v.mp4", timeout=(5, 5))
    assert [s.headers.get("Authorization") for s in api.seen + elsewhere.seen] == [None, None]


def test_the_netrc_password_neither_replaces_the_key_nor_reaches_the_upload_host(netrc_default, api, elsewhere):
    api.route("/api/v3/media/uploads", json_answer(
        {"upload": {"url": elsewhere.url + "/put", "method": "PUT"}, "download_url": "https://cdn.example/x.png"}))
    elsewhere.route("/put", lambda seen: (200, {}, b""))
    client = client_for(api)
    try:
        client.upload(b"png bytes", "frame.png")
    finally:
        client.close()
    assert [s.headers.get("Authorization") for s in api.seen] == [f"Bearer {KEY}"]
    assert [s.headers.get("Authorization") for s in elsewhere.seen] == [None]


# === answers of an unexpected shape: a named error, never a raw TypeError ===========================
MALFORMED_RESULTS = {
    "timings is a list": {"id": TASK, "status": "processing", "timings": [1, 2]},
    "timings is text": {"id": TASK, "status": "processing", "timings": "ab"},
    "outputs is a number": {"id": TASK, "status": "completed", "outputs": 5},
    "outputs is one URL, not a list": {"id": TASK, "status": "completed", "outputs": "https://cdn.example/v.mp4"},
    "outputs holds objects": {"id": TASK, "status": "completed", "outputs": [{"url": "https://cdn.example/v.mp4"}]},
    "status is an object": {"id": TASK, "status": {"state": "completed"}},
}


@pytest.mark.parametrize("name", MALFORMED_RESULTS)
def test_a_malformed_result_answer_is_a_named_error_or_a_sane_prediction(api, name):
    api.route(f"/api/v3/predictions/{TASK}/result", json_answer(MALFORMED_RESULTS[name]))
    client = client_for(api)
    try:
        prediction = client.get_result(TASK)
    except ServerError as exc:
        assert TASK in str(exc)
        return
    finally:
        client.close()
    assert isinstance(prediction, Prediction) and prediction.id == TASK
    assert all(isinstance(url, str) and url.startswith("https://") for url in prediction.outputs)
    assert isinstance(prediction.timings, dict) and isinstance(prediction.status, str)


def test_a_billed_submit_with_odd_extra_fields_still_returns_its_task_id(api):
    """The POST was billed: an informational field of the wrong type must not lose the task."""
    api.route("/api/v3/wavespeed-ai/magi-1-24b", json_answer(
        {"id": TASK, "status": "created", "timings": [1], "outputs": 7}))
    client = client_for(api)
    try:
        assert client.submit({"prompt": "a cat"}).id == TASK
    finally:
        client.close()


@pytest.mark.parametrize("upload", [
    "not an object",
    {"url": "PUT_URL", "headers": ["x"]},
    {"url": ["PUT_URL"]},
    {"url": "PUT_URL", "method": ["PUT"]},
    {"url": "PUT_URL", "method": "PUT /x HTTP/1.1\r\nX-Injected: 1\r\n\r\nPUT"},
    {"url": "PUT_URL", "headers": {"X-Amz-Meta": "a\r\nX-Injected: 1"}},
    {"url": "PUT_URL", "headers": {"Bad Name": "1"}},
])
def test_a_malformed_upload_answer_is_an_upload_error(api, elsewhere, upload):
    if isinstance(upload, dict):
        upload = json.loads(json.dumps(upload).replace("PUT_URL", elsewhere.url + "/put"))
    api.route("/api/v3/media/uploads", json_answer({"upload": upload, "download_url": "https://cdn.example/x"}))
    elsewhere.route("/put", lambda seen: (200, {}, b""))
    client = client_for(api)
    try:
        with pytest.raises(UploadError):
            client.upload(b"png bytes", "frame.png")
    finally:
        client.close()


def test_a_non_ascii_digit_content_length_is_not_a_raw_crash(api, tmp_path):
    """'²' is a digit to str.isdigit() but not to int(): a hostile header must not crash the node."""
    api.route("/clip.mp4", lambda seen: (200, {"Content-Length": "\u00b2", "Connection": "close"}, MP4_BODY))
    try:
        saved = download_video(api.url + "/clip.mp4", tmp_path / "v.mp4", attempts=1, timeout=(5, 5))
    except DownloadError:
        return
    assert saved.read_bytes() == MP4_BODY


def test_an_api_answer_of_the_wrong_type_is_never_a_raw_exception(api):
    assert TASK in str(result_error(api, json_answer(["not", "an", "object"])))


# === a file inside the allowed folders that makes FFmpeg read another file ==========================
@pytest.fixture
def folders(tmp_path, monkeypatch):
    layout = {name: tmp_path / name for name in ("input", "output", "temp", "private")}
    for path in layout.values():
        path.mkdir()
    for name in ("input", "output", "temp"):
        monkeypatch.setenv(f"MAGI1_{name.upper()}_DIR", str(layout[name]))
    write_clip(layout["private"] / "secret.mp4")
    write_clip(layout["input"] / "clip.mp4")
    return layout


# FFmpeg picks a demuxer by content, not by name: these name other files or network addresses.
# With opencv-python 4.8.1.78 (the floor requirements.txt allows) the HLS playlists decode the
# private video's frames.
DISGUISED = {
    "an HLS playlist naming a file outside (relative)":
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n../private/secret.mp4\n#EXT-X-ENDLIST\n",
    "an HLS playlist naming a file outside (absolute)":
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{private}/secret.mp4\n#EXT-X-ENDLIST\n",
    "an ffconcat script": "ffconcat version 1.0\nfile '{private}/secret.mp4'\n",
    "an SDP description (opens UDP sockets)": "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\n"
                                             "t=0 0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n",
    "plain text": "-----BEGIN PGP PRIVATE KEY BLOCK-----\nsecret\n",
}


@pytest.mark.parametrize("name", DISGUISED)
def test_a_file_named_like_a_video_but_not_a_video_container_is_refused(folders, name):
    (folders["input"] / "playlist.mp4").write_text(DISGUISED[name].format(**folders))
    ctx = pipeline.Context(output_dir=folders["output"], private_dir=folders["private"] / "magi1")
    with pytest.raises(InputError) as refused:
        pipeline.resolve_source(ctx, "playlist.mp4")
    with pytest.raises(InputError) as missing:
        pipeline.resolve_source(ctx, "nothing.mp4")
    assert str(refused.value).replace("playlist", "X") == str(missing.value).replace("nothing", "X")


def test_a_real_video_in_the_input_folder_still_loads(folders):
    ctx = pipeline.Context(output_dir=folders["output"], private_dir=folders["private"] / "magi1")
    assert pipeline.resolve_source(ctx, "clip.mp4") == (folders["input"] / "clip.mp4").resolve()


# === a server that trickles: the download must stop on Cancel and at its deadline ==================
@pytest.fixture
def trickle():
    """Answers 200 with a large Content-Length, then one byte every 0.2 s, for ever (each read is
    well inside the read timeout, so only a deadline or a Cancel can end it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 100000000\r\n\r\n"
                             + MP4_BODY[:24])
                while not stop.wait(0.2):
                    conn.sendall(b"\x00")
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/clip.mp4"
    stop.set()
    thread.join(5)
    listener.close()


class Cancelled(Exception):
    pass


def run_bounded(function, limit_s: float = 20.0):
    """Run `function` in a thread; (finished, result or exception) after at most `limit_s`."""
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_call(function)), daemon=True)
    thread.start()
    thread.join(limit_s)
    return (not thread.is_alive()), (outcome[0] if outcome else None)


def _call(function):
    try:
        return function()
    except BaseException as exc:  # noqa: BLE001 - handed back to the test
        return exc


def test_a_trickling_download_stops_soon_after_cancel(trickle, tmp_path):
    pressed = threading.Event()

    def throw_if_interrupted() -> None:
        if pressed.is_set():
            raise Cancelled()

    threading.Timer(0.5, pressed.set).start()
    finished, outcome = run_bounded(lambda: download_video(
        trickle, tmp_path / "v.mp4", timeout=(5, 5), throw_if_interrupted=throw_if_interrupted))
    assert finished, "the download thread was still blocked 20 s after Cancel"
    assert isinstance(outcome, Cancelled)
    assert list(tmp_path.iterdir()) == []


def test_a_trickling_download_stops_at_its_deadline(trickle, tmp_path):
    finished, outcome = run_bounded(lambda: download_video(
        trickle, tmp_path / "v.mp4", timeout=(5, 5), max_seconds=1.0))
    assert finished, "the download was still running 20 s after its 1 s deadline"
    assert isinstance(outcome, DownloadError) and "1 s" in str(outcome)
    assert list(tmp_path.iterdir()) == []


# === the key route: a Host without a port means the scheme's default port ==========================
OWN_PAGE = {"X-Magi1-Request": "1"}


@pytest.mark.parametrize("host, origin", [
    ("127.0.0.1", "http://127.0.0.1:3000"),  # ComfyUI on port 80; a page of another local server
    ("localhost", "http://localhost:5173"),
    ("10.0.0.2", "https://10.0.0.2:8443"),
])
def test_the_key_route_refuses_a_page_on_another_port_when_comfyui_uses_the_default_port(host, origin):
    headers = {**OWN_PAGE, "Host": host, "Origin": origin}
    assert key_routes.request_refusal("POST", headers, content_type="application/json") is not None
    assert key_routes.request_refusal("GET", headers) is not None


@pytest.mark.parametrize("host, origin", [("127.0.0.1", "http://127.0.0.1"), ("10.0.0.2", "https://10.0.0.2"),
                                          ("127.0.0.1:80", "http://127.0.0.1"), ("10.0.0.2:443", "https://10.0.0.2")])
def test_the_key_route_still_accepts_comfyui_on_the_default_port(host, origin):
    headers = {**OWN_PAGE, "Host": host, "Origin": origin}
    assert key_routes.request_refusal("POST", headers, content_type="application/json") is None


# === a proxy that echoes the request's headers: the key must not reach the node's error ============
def echoing(status: int):
    def answer(seen):
        message = f"bad request; headers were: Authorization: {seen.headers.get('Authorization')}"
        return status, {"Content-Type": "application/json"}, json.dumps({"code": status, "message": message}).encode()
    return answer


@pytest.mark.parametrize("status", [400, 401, 402, 404, 429, 500])
def test_an_error_answer_echoing_the_authorization_header_never_shows_the_key(api, status):
    error = result_error(api, echoing(status))
    assert KEY not in str(error) and KEY not in str(error.service_message)
    assert "bad request" in str(error)


def test_a_submit_answer_echoing_the_key_never_shows_it(api):
    api.route("/api/v3/wavespeed-ai/magi-1-24b", echoing(502))
    client = client_for(api)
    try:
        with pytest.raises(ApiError) as caught:
            client.submit({"prompt": "a cat"})
    finally:
        client.close()
    assert KEY not in str(caught.value)


def test_a_failed_task_whose_error_echoes_the_key_never_shows_it(api):
    api.route(f"/api/v3/predictions/{TASK}/result", json_answer(
        {"id": TASK, "status": "failed", "error": f"upstream refused Bearer {KEY}"}))
    client = client_for(api)
    try:
        prediction = client.get_result(TASK)
    finally:
        client.close()
    assert prediction.has_failed and KEY not in prediction.error and "upstream refused" in prediction.error


# === a path outside the folders is refused by its text, before the file system is asked ============
def test_an_absolute_path_outside_that_leads_inside_is_refused_by_its_text(folders, tmp_path):
    """Resolving a path outside can already reach the network (a UNC path on Windows sends the
    user's NTLM hash, /net/host mounts by autofs): a path written outside the folders is refused
    without being resolved, even when a symlink there would lead back inside."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "clip.mp4").symlink_to(folders["input"] / "clip.mp4")
    ctx = pipeline.Context(output_dir=folders["output"], private_dir=folders["private"] / "magi1")
    with pytest.raises(InputError):
        pipeline.resolve_source(ctx, str(tmp_path / "elsewhere" / "clip.mp4"))


def test_dot_dot_out_of_the_folders_and_back_in_is_still_fine(folders):
    ctx = pipeline.Context(output_dir=folders["output"], private_dir=folders["private"] / "magi1")
    assert pipeline.resolve_source(ctx, "../input/clip.mp4") == (folders["input"] / "clip.mp4").resolve()


def test_a_folder_given_through_a_symlink_is_allowed_as_written(tmp_path, monkeypatch):
    """ComfyUI started with --input-directory naming a symlink: both spellings of a path work."""
    real = tmp_path / "disk" / "input"
    write_clip(real / "clip.mp4")
    (tmp_path / "link").symlink_to(tmp_path / "disk", target_is_directory=True)
    for name in ("output", "temp"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(f"MAGI1_{name.upper()}_DIR", str(tmp_path / name))
    monkeypatch.setenv("MAGI1_INPUT_DIR", str(tmp_path / "link" / "input"))
    ctx = pipeline.Context(output_dir=tmp_path / "output", private_dir=tmp_path / "private")
    for source in ("clip.mp4", str(tmp_path / "link" / "input" / "clip.mp4"), str(real / "clip.mp4")):
        assert pipeline.resolve_source(ctx, source) == (real / "clip.mp4").resolve()


# === a prompt of marks only: nothing to draw them on ================================================
@pytest.mark.parametrize("prompt", ["\u034f", "\ufe0f\ufe0f", "\u0300\u0301", "\U000e0100", "\u200b\u034f\ufe0e"])
def test_a_prompt_of_combining_marks_or_variation_selectors_only_is_refused(prompt):
    """A grapheme joiner or a variation selector draws nothing, and a lone accent has no letter."""
    with pytest.raises(InputError, match="invisible|empty"):
        params.build_request(prompt, 1)


@pytest.mark.parametrize("prompt", ["e\u0301", "\u2764\ufe0f", "\u0915\u094d\u0937"])
def test_a_prompt_with_marks_on_letters_is_kept(prompt):
    assert params.build_request(prompt, 1).prompt == prompt


# === a body that cannot be decoded as its Content-Encoding says ====================================
@pytest.mark.parametrize("encoding, body", [
    ("gzip", MP4_BODY),  # says gzip, is not
    ("deflate", b"\x78\x9c" + b"\xff" * 40),
    ("gzip, gzip, gzip, gzip, gzip, gzip, gzip", MP4_BODY),  # more layers than urllib3 allows
])
def test_a_body_that_does_not_decode_is_a_download_error(api, tmp_path, encoding, body):
    api.route("/clip.mp4", lambda seen: (200, {"Content-Type": "video/mp4", "Content-Encoding": encoding}, body))
    with pytest.raises(DownloadError):
        download_video(api.url + "/clip.mp4", tmp_path / "v.mp4", attempts=2, timeout=(5, 5), sleep=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def garbled(status: int = 200):
    return lambda seen: (status, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, b'{"code": 200}')


def test_an_api_answer_that_does_not_decode_is_a_named_error(api):
    assert TASK in str(result_error(api, garbled()))


def test_a_submit_answer_that_does_not_decode_says_the_task_may_be_billed(api):
    api.route("/api/v3/wavespeed-ai/magi-1-24b", garbled())
    client = client_for(api)
    try:
        with pytest.raises(SubmitUncertainError):
            client.submit({"prompt": "a cat"})
    finally:
        client.close()
    assert len(api.seen) == 1  # sent once, never again


# === a redirect whose Location no parser can read ====================================================
UNREADABLE_LOCATIONS = ["http://[::1/x", "https://[zz]/", "//[", "https://[::1]:99999/"]


@pytest.mark.parametrize("location", UNREADABLE_LOCATIONS)
def test_an_unreadable_redirect_from_a_download_is_a_download_error(api, tmp_path, location):
    api.route("/clip.mp4", redirect_to(location))
    with pytest.raises(DownloadError):
        download_video(api.url + "/clip.mp4", tmp_path / "v.mp4", attempts=1, timeout=(5, 5))


@pytest.mark.parametrize("location", UNREADABLE_LOCATIONS)
def test_an_unreadable_redirect_from_the_api_is_a_named_error(api, location):
    api.route(f"/api/v3/predictions/{TASK}/result", redirect_to(location))
    client = client_for(api)
    try:
        with pytest.raises(Magi1Error):
            client.get_result(TASK)
    finally:
        client.close()
