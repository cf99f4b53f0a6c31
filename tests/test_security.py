"""A stranger's workflow and a stranger's web page, tried as an attacker would (issue 9).

Each test is one attack (or a variant of its kind) against the real code path, over real HTTP on
loopback: the emulator where it can answer, else a scripted stdlib server (tests/loopback_http.py)
for what a hostile or broken service would send. The same attacks inside a real ComfyUI are in
test_security_comfyui.py.
"""
from __future__ import annotations

import asyncio
import gzip
import os
import re
import time
import tomllib
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.version import Version
from urllib.parse import urlsplit

from urllib3.util import parse_url

from loopback_http import LoopbackHTTP, redirect_to, self_signed_certificate
from video_reference import write_clip
from magi1 import config, key_routes, local_files, params, pipeline, task_ids, urls
from magi1.client import RETRY_AFTER_MAX_S, RetryPolicy, WaveSpeedClient, _retry_after
from magi1.download import download_video
from magi1.errors import (
    DownloadError,
    InputError,
    InvalidApiKeyError,
    ServerError,
    SubmitUncertainError,
    UnexpectedTaskIdError,
    UnsafeUrlError,
)

REPO = Path(__file__).resolve().parents[1]
TASK = "0123456789abcdef0123456789abcdef"
KEY = "sk-security-test-" + "k" * 20 + "7788"
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
FAST_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def envelope(data: dict) -> bytes:
    import json

    return json.dumps({"code": 200, "message": "success", "data": data}).encode()


def json_answer(data: dict, status: int = 200, **headers: str):
    return lambda seen: (status, {"Content-Type": "application/json", **headers}, envelope(data))


def completed(task_id: str, outputs: list[str] | None = None) -> dict:
    return {"id": task_id, "status": "completed", "outputs": outputs or [], "timings": {"inference": 5}}


def client_for(server: LoopbackHTTP, **kwargs) -> WaveSpeedClient:
    sleeps: list[float] = []
    client = WaveSpeedClient(server.url, config.ApiKey(KEY, "test"), retry=kwargs.pop("retry", FAST),
                             sleep=sleeps.append, **kwargs)
    client.sleeps = sleeps
    return client


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


# === 1. local files =================================================================================
@pytest.fixture
def folders(tmp_path, monkeypatch):
    """ComfyUI-like input/output/temp (through the glue's fallbacks) and a private folder beside them."""
    layout = {name: tmp_path / name for name in ("input", "output", "temp", "private")}
    for path in layout.values():
        path.mkdir()
    monkeypatch.setenv("MAGI1_INPUT_DIR", str(layout["input"]))
    monkeypatch.setenv("MAGI1_OUTPUT_DIR", str(layout["output"]))
    monkeypatch.setenv("MAGI1_TEMP_DIR", str(layout["temp"]))
    monkeypatch.setenv("HOME", str(layout["private"]))  # so "~/secret.mp4" names a real file
    write_clip(layout["input"] / "clip.mp4")
    write_clip(layout["output"] / "magi1" / "magi1_saved.mp4")
    write_clip(layout["temp"] / "preview.mp4")
    write_clip(layout["private"] / "secret.mp4")
    (layout["private"] / "id_rsa.asc").write_text("-----BEGIN PGP PRIVATE KEY BLOCK-----\nsecret\n")
    (layout["input"] / "notes.nfo").write_text("FFmpeg reads this as a video\n")
    return layout


def load(folders, source: str) -> Path:
    """The node's own path: pipeline.resolve_source with a Context over these folders."""
    ctx = pipeline.Context(output_dir=folders["output"], private_dir=folders["private"] / "magi1")
    return pipeline.resolve_source(ctx, source)


def refusal(folders, source: str) -> str:
    with pytest.raises(InputError) as caught:
        load(folders, source)
    return str(caught.value)


@pytest.mark.parametrize("source, where", [
    ("clip.mp4", "input/clip.mp4"),
    ("magi1/magi1_saved.mp4", "output/magi1/magi1_saved.mp4"),
    ("preview.mp4", "temp/preview.mp4"),
    ('"{input}/clip.mp4"', "input/clip.mp4"),  # Windows' "Copy as path" puts quotes around it
    ("'{input}/clip.mp4'", "input/clip.mp4"),
    ("  {output}/magi1/magi1_saved.mp4  ", "output/magi1/magi1_saved.mp4"),
])
def test_videos_inside_input_output_and_temp_are_loaded(folders, source, where):
    source = source.format(input=folders["input"], output=folders["output"])
    assert load(folders, source) == (folders["input"].parent / where).resolve()


def test_a_symlink_inside_the_input_folder_to_a_video_in_output_is_loaded(folders):
    (folders["input"] / "linked.mp4").symlink_to(folders["output"] / "magi1" / "magi1_saved.mp4")
    assert load(folders, "linked.mp4") == (folders["output"] / "magi1" / "magi1_saved.mp4").resolve()


ATTACKS = {
    "an absolute path outside": "{private}/secret.mp4",
    "a text file FFmpeg decodes": "{private}/id_rsa.asc",
    "a text file inside input": "notes.nfo",
    "dot-dot out of input": "../private/secret.mp4",
    "dot-dot inside an absolute path": "{input}/../private/secret.mp4",
    "the home folder": "~/secret.mp4",
    "a quoted outside path": '"{private}/secret.mp4"',
    "a folder": "magi1",
    "a NUL byte": "clip.mp4\x00.txt",
}


@pytest.mark.parametrize("name", ATTACKS)
def test_a_local_path_outside_the_allowed_folders_or_not_a_video_is_refused(folders, name):
    refusal(folders, ATTACKS[name].format(**folders))


def test_a_file_url_is_refused_by_the_url_policy(folders):
    with pytest.raises(UnsafeUrlError):
        load(folders, f"file://{folders['private']}/secret.mp4")


def test_a_symlink_in_input_pointing_outside_is_refused(folders):
    (folders["input"] / "innocent.mp4").symlink_to(folders["private"] / "secret.mp4")
    refusal(folders, "innocent.mp4")


def test_a_symlink_named_like_a_video_pointing_to_a_text_file_is_refused(folders):
    (folders["input"] / "key.mp4").symlink_to(folders["private"] / "id_rsa.asc")
    refusal(folders, "key.mp4")


def test_a_symlinked_folder_inside_input_pointing_outside_is_refused(folders):
    (folders["input"] / "escape").symlink_to(folders["private"], target_is_directory=True)
    refusal(folders, "escape/secret.mp4")


def test_missing_and_refused_files_get_the_same_answer(folders):
    """The answer must not tell whether a path exists."""
    exists = f"{folders['private']}/secret.mp4"
    missing = f"{folders['private']}/nothing.mp4"
    assert refusal(folders, exists).replace(exists, "<path>") == refusal(folders, missing).replace(missing, "<path>")
    assert refusal(folders, "clip_missing.mp4").replace("clip_missing.mp4", "<p>") == \
        refusal(folders, "notes.nfo").replace("notes.nfo", "<p>")


def test_the_refusal_says_which_folders_are_allowed(folders):
    message = refusal(folders, "/etc/passwd")
    assert "input, output or temp" in message and ".mp4" in message


# === 2. URLs ==========================================================================================
@pytest.mark.parametrize("url", [
    "http://evil.example\\@127.0.0.1/",  # urllib sees 127.0.0.1, requests connects to evil.example
    "https://api.wavespeed.ai\\@evil.example/",
    "http://user@127.0.0.1:8000/",
    "http://user:secret@127.0.0.1:8000/",
    "https://user:secret@api.wavespeed.ai/",
    "http://127.0.0.1%2f@evil.example/",
    "http://evil.example/",
    "http://10.0.0.1/",
    "http://192.168.1.2:8188/",
    "http://0x7f.1/",  # some resolvers make these loopback; the policy does not guess
    "http://2130706433/",
    "http://127.0.0.1.nip.io/",
    "http://\uff11\uff12\uff17.0.0.1/",  # full-width digits: IDNA would make them 127.0.0.1
    "https://\uff45vil.example/",
    "http://%31%32%37.0.0.1/",  # urllib3 decodes it to 127.0.0.1, urllib does not
    "https://api%2Ewavespeed.ai/",
    "https://a^b.example/",
    "ftp://127.0.0.1/v.mp4",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "https:///no-host",
    " https://api.wavespeed.ai",
    "https://api.wavespeed.ai/\nHost: evil",
    "https://api.wavespeed.ai/v\x00.mp4",
    "//api.wavespeed.ai/",
    "",
])
def test_the_url_policy_refuses(url):
    with pytest.raises(UnsafeUrlError):
        urls.check_url(url)


@pytest.mark.parametrize("url", [
    "https://api.wavespeed.ai", "HTTPS://API.WAVESPEED.AI/x", "https://cdn.example.com:8443/v.mp4?sig=1",
    "http://127.0.0.1:8000", "http://localhost:9/", "http://[::1]:80/x", "http://127.5.5.5/",
])
def test_the_url_policy_accepts(url):
    assert urls.check_url(url) == url


def test_a_refused_url_never_shows_its_user_info_or_query():
    with pytest.raises(UnsafeUrlError) as caught:
        urls.check_url("http://user:hunter2@evil.example/v.mp4?token=SECRET")
    assert "hunter2" not in str(caught.value) and "SECRET" not in str(caught.value)


def test_a_base_url_with_a_backslash_is_refused_before_the_key_is_sent(monkeypatch, api):
    monkeypatch.setenv("WAVESPEED_BASE_URL", f"http://evil.example\\@127.0.0.1:{api.port}")
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    with pytest.raises(UnsafeUrlError, match="WAVESPEED_BASE_URL"):
        config.load_settings(None)
    assert api.seen == []


def test_a_redirect_downgrade_from_https_to_http_is_refused_even_on_loopback():
    with pytest.raises(UnsafeUrlError, match="plain http"):
        urls.check_url("http://127.0.0.1:9/v.mp4", previous="https://cdn.example.com/v.mp4")


URL_PIECES = st.builds(
    lambda scheme, sep, userinfo, host, port, tail: f"{scheme}{sep}{userinfo}{host}{port}{tail}",
    st.sampled_from(["http", "https", "HTTP", "hTTps", "ftp", "file", ""]),
    st.sampled_from(["://", ":/", ":\\\\", ":///", "//"]),
    st.sampled_from(["", "user@", "u:p@", "evil.example\\@", "a%40b@", "@", "127.0.0.1@"]),
    st.sampled_from(["127.0.0.1", "localhost", "LocalHost", "[::1]", "evil.example", "10.0.0.1", "0x7f.1",
                     "2130706433", "127.1", "localhost.", "api.wavespeed.ai", "evil.example\\.127.0.0.1",
                     "[::ffff:127.0.0.1]", "127.0.0.1.nip.io", "[::1", "::1", "%31%32%37.0.0.1", ""]),
    st.sampled_from(["", ":80", ":8188", ":0", ":99999", ":abc", ":"]),
    st.text(alphabet="/\\@?#%:.a1[] ", max_size=12),
)


@FAST_SETTINGS
@given(url=st.one_of(URL_PIECES, st.text(max_size=60), st.builds("https://{}/".format, st.text(max_size=12))))
def test_an_accepted_url_connects_where_it_was_checked(url):
    """Whatever the URL, if the policy accepts it, requests connects to the host that was checked,
    over the scheme that was checked; plain http only to loopback; never with user-info."""
    try:
        urls.check_url(url)
    except UnsafeUrlError:
        return
    checked = parse_url(url)
    try:
        prepared = requests.Request("GET", url).prepare()
    except requests.RequestException:
        return  # requests refuses it too: nothing connects
    connects = parse_url(prepared.url)
    assert (connects.host or "").lower() == (checked.host or "").lower()
    assert (urlsplit(url).hostname or "") == (checked.host or "").lower().strip("[]")  # urllib agrees too
    assert connects.scheme == checked.scheme.lower()
    assert connects.auth is None and "\\" not in url
    assert connects.scheme == "https" or urls.is_loopback_host(connects.host)


@FAST_SETTINGS
@given(url=st.one_of(URL_PIECES, st.text(max_size=60)), previous=st.sampled_from(
    ["https://a.example/x", "http://127.0.0.1:1/x"]))
def test_the_url_policy_only_ever_raises_its_own_error(url, previous):
    try:
        urls.check_url(url, previous=previous)
    except UnsafeUrlError:
        pass


# --- downloads and their redirects ----------------------------------------------------------------------
def download(url: str, dest: Path, **kwargs) -> Path:
    session = kwargs.pop("session", None) or requests.Session()
    with session:
        return download_video(url, dest, session=session, sleep=lambda s: None, timeout=(2, 5), **kwargs)


_clip_cache: list[bytes] = []


def video_bytes(size: int = 4000) -> bytes:
    """A whole (tiny) MP4 followed by a `free` box of `size` random bytes: downloads check the index."""
    if not _clip_cache:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            _clip_cache.append(write_clip(Path(folder) / "clip.mp4").read_bytes())
    return _clip_cache[0] + (size + 8).to_bytes(4, "big") + b"free" + os.urandom(size)


def test_a_redirect_to_plain_http_elsewhere_is_refused_before_connecting(api, tmp_path):
    api.route("/v.mp4", redirect_to("http://192.0.2.1:9/v.mp4"))  # TEST-NET: would hang if tried
    began = time.monotonic()
    with pytest.raises(DownloadError, match="plain http"):
        download(api.url + "/v.mp4", tmp_path / "v.mp4")
    assert time.monotonic() - began < 2 and not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize("location", [
    "http://evil.example\\@127.0.0.1:{port}/v.mp4",
    "http://user:pw@127.0.0.1:{port}/v.mp4",
    "ftp://127.0.0.1/v.mp4",
    "file:///etc/passwd",
    "//192.0.2.1/v.mp4",
])
def test_a_redirect_breaking_the_policy_is_refused(api, tmp_path, location):
    api.route("/v.mp4", redirect_to(location.format(port=api.port)))
    api.route("/target.mp4", lambda seen: (200, {}, video_bytes()))
    with pytest.raises(DownloadError, match="Refused"):
        download(api.url + "/v.mp4", tmp_path / "v.mp4")
    assert api.paths() == ["/v.mp4"]


def test_a_redirect_from_https_to_http_on_loopback_is_refused(tmp_path, certificate, api):
    api.route("/v.mp4", lambda seen: (200, {}, video_bytes()))
    with LoopbackHTTP(tls=certificate) as secure:
        secure.route("/v.mp4", redirect_to(api.url + "/v.mp4"))
        session = requests.Session()
        session.verify = str(certificate[0])
        session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment wins over verify
        with pytest.raises(DownloadError, match="https:// to plain http://"):
            download(secure.url + "/v.mp4", tmp_path / "v.mp4", session=session)
    assert api.seen == []


def test_redirects_are_followed_up_to_the_limit_and_no_further(api, tmp_path):
    data = video_bytes()
    api.route("/v.mp4", lambda seen: (200, {}, data))
    for hop in range(urls.MAX_REDIRECTS):
        api.route(f"/hop{hop}", redirect_to(f"/hop{hop + 1}" if hop + 1 < urls.MAX_REDIRECTS else "/v.mp4"))
    assert download(api.url + "/hop0", tmp_path / "ok.mp4").read_bytes() == data
    api.route("/loop", redirect_to("/loop"))
    with pytest.raises(DownloadError, match="redirects"):
        download(api.url + "/loop", tmp_path / "loop.mp4")
    assert api.paths().count("/loop") == urls.MAX_REDIRECTS + 1


def test_a_gzip_encoded_video_is_decoded_and_passes_the_length_check(api, tmp_path):
    data = video_bytes(200_000)
    body = gzip.compress(data)
    api.route("/v.mp4", lambda seen: (200, {"Content-Encoding": "gzip", "Content-Length": str(len(body))}, body))
    assert download(api.url + "/v.mp4", tmp_path / "v.mp4").read_bytes() == data


def test_a_truncated_gzip_answer_is_never_kept(api, tmp_path):
    body = gzip.compress(video_bytes(200_000))
    api.route("/v.mp4", lambda seen: (200, {"Content-Encoding": "gzip", "Content-Length": str(len(body) + 500),
                                            "Connection": "close"}, body))
    with pytest.raises(DownloadError):
        download(api.url + "/v.mp4", tmp_path / "v.mp4", attempts=2)
    assert list(tmp_path.iterdir()) == []


def test_a_gzip_bomb_stops_at_the_size_cap(api, tmp_path):
    body = gzip.compress(MP4_HEAD + bytes(20_000_000))
    api.route("/v.mp4", lambda seen: (200, {"Content-Encoding": "gzip"}, body))
    with pytest.raises(DownloadError, match="cap"):
        download(api.url + "/v.mp4", tmp_path / "v.mp4", max_bytes=1_000_000)
    assert list(tmp_path.iterdir()) == []


# --- the key goes to the API origin only ------------------------------------------------------------------
def test_the_key_is_not_sent_where_an_api_redirect_points_elsewhere(api, elsewhere):
    api.route(f"/api/v3/predictions/{TASK}/result", redirect_to(f"{elsewhere.url}/result", 307))
    elsewhere.route("/result", json_answer(completed(TASK)))
    client_for(api).get_result(TASK)
    assert [s.headers.get("Authorization") for s in elsewhere.seen] == [None]


def test_the_key_is_not_sent_to_localhost_when_the_base_url_is_127_0_0_1(api):
    api.route(f"/api/v3/predictions/{TASK}/result", redirect_to(f"http://localhost:{api.port}/moved"))
    api.route("/moved", json_answer(completed(TASK)))
    client_for(api).get_result(TASK)
    assert api.seen[0].headers["Authorization"] == f"Bearer {KEY}" and "Authorization" not in api.seen[1].headers


def test_the_key_follows_a_redirect_within_the_api_origin(api):
    api.route(f"/api/v3/predictions/{TASK}/result", redirect_to("/api/v3/moved"))
    api.route("/api/v3/moved", json_answer(completed(TASK)))
    assert client_for(api).get_result(TASK).is_completed
    assert [s.headers.get("Authorization") for s in api.seen] == [f"Bearer {KEY}"] * 2


def test_an_api_redirect_to_plain_http_elsewhere_is_refused(api):
    api.route(f"/api/v3/predictions/{TASK}/result", redirect_to("http://192.0.2.1:9/result"))
    with pytest.raises(UnsafeUrlError):
        client_for(api).get_result(TASK)


def test_an_api_redirect_loop_is_a_clear_error(api):
    api.route(f"/api/v3/predictions/{TASK}/result", redirect_to(f"/api/v3/predictions/{TASK}/result"))
    with pytest.raises(ServerError, match="redirected too many times"):
        client_for(api).get_result(TASK)
    assert len(api.seen) == urls.MAX_REDIRECTS + 1


def test_the_upload_put_never_carries_the_key_even_through_a_redirect(api, elsewhere):
    api.route("/api/v3/media/uploads", json_answer({
        "upload": {"method": "PUT", "url": f"{elsewhere.url}/put", "headers": {"Content-Type": "image/png"}},
        "download_url": f"{elsewhere.url}/frame.png"}))
    elsewhere.route("/put", redirect_to("/put2", 307))
    elsewhere.route("/put2", lambda seen: (200, {}, b""))
    client_for(api).upload(b"png bytes", "f.png")
    assert [s.path for s in elsewhere.seen] == ["/put", "/put2"]
    assert all("Authorization" not in s.headers for s in elsewhere.seen)


def test_the_submit_does_not_follow_a_redirect_to_plain_http_elsewhere(api):
    api.route("/api/v3/wavespeed-ai/magi-1-24b", redirect_to("http://192.0.2.1:9/submit", 307))
    with pytest.raises(UnsafeUrlError):
        client_for(api).submit({"prompt": "x", "seed": 1})
    assert len(api.seen) == 1


# === 3. the key ========================================================================================
@pytest.mark.parametrize("key, what", [
    ("abcd1234-first\nsecond-half-5678", "line break"),
    ("abcd1234-first\r\nsecond-half-5678", "line break"),
    ("abcd1234\u200bsecond-half-5678", "U+200B"),
    ("\ufeffabcd1234-second-half-5678", "U+FEFF"),
    ("abcd1234 second-half-5678", "space"),
    ("abcd1234\u00a0second-half-5678", "U+00A0"),
    ("abcd1234\u202esecond-half-5678", "U+202E"),
    ("abcd1234\x1bsecond-half-5678", "U+001B"),  # (a NUL cannot be in the environment)
    ("abcd1234\u00e9second-half-5678", "U+00E9"),
    ("short", "characters"),
    ("x" * 600, "characters"),
])
def test_a_malformed_key_from_the_environment_is_a_clear_error_that_never_shows_it(monkeypatch, tmp_path, key, what):
    monkeypatch.setenv("WAVESPEED_API_KEY", key)
    monkeypatch.setenv("WAVESPEED_BASE_URL", "http://127.0.0.1:9")
    ctx = pipeline.Context(output_dir=tmp_path, private_dir=tmp_path / "private")
    with pytest.raises(InvalidApiKeyError) as caught:
        ctx.client()
    message = str(caught.value)
    assert what in message and "WAVESPEED_API_KEY" in message
    for piece in re.split(r"[^A-Za-z0-9-]+", key.strip()):
        assert len(piece) < 5 or piece not in message


PRINTABLE_ASCII = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


@FAST_SETTINGS
@given(head=st.text(PRINTABLE_ASCII, min_size=12, max_size=40), bad=st.characters(exclude_categories=["Cs"]),
       tail=st.text(PRINTABLE_ASCII, min_size=12, max_size=40))
def test_a_key_is_printable_ascii_and_a_refusal_never_contains_it(head, bad, tail):
    key = head + bad + tail
    try:
        checked = config.check_key(key, source="a test")
    except InvalidApiKeyError as exc:
        assert not 0x21 <= ord(bad) <= 0x7E
        assert head not in str(exc) and tail not in str(exc)
    else:
        assert 0x21 <= ord(bad) <= 0x7E and checked == key


def test_a_key_file_with_a_byte_order_mark_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    config.key_file(tmp_path).write_text("\ufeff" + KEY + "\n", encoding="utf-8")
    with pytest.raises(InvalidApiKeyError, match="key file.*U\\+FEFF") as caught:
        config.resolve_api_key(tmp_path)
    assert KEY not in str(caught.value) and KEY[-8:] not in str(caught.value)


def test_a_key_file_ending_with_a_newline_is_fine(monkeypatch, tmp_path):
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    config.key_file(tmp_path).write_text(KEY + "\r\n")
    assert config.resolve_api_key(tmp_path).reveal() == KEY


def test_a_malformed_key_is_never_written(tmp_path):
    with pytest.raises(InvalidApiKeyError) as caught:
        config.write_key_file(tmp_path, "abcd1234\nefgh5678")
    assert "abcd1234" not in str(caught.value) and not config.key_file(tmp_path).exists()


def test_the_key_status_reports_a_malformed_key_without_it(monkeypatch, tmp_path):
    monkeypatch.setenv("WAVESPEED_API_KEY", "abcd1234\nefgh5678")
    status = key_routes.key_status(tmp_path)
    assert status["set"] is False and "line break" in status["problem"]
    assert "abcd1234" not in str(status) and "efgh5678" not in str(status)


# --- the key route's origin rule (its HTTP side runs in test_security_comfyui.py) ------------------------
OWN = {"Host": "127.0.0.1:8188", "Origin": "http://127.0.0.1:8188", "X-Magi1-Request": "1"}


@pytest.mark.parametrize("change, method", [
    ({"Origin": None}, "POST"),
    ({"Origin": "null"}, "POST"),
    ({"Origin": "http://evil.example"}, "POST"),
    ({"Origin": "http://127.0.0.1:9999"}, "POST"),
    ({"Origin": "https://127.0.0.1:8188.evil.example"}, "POST"),
    ({"Origin": "http://user@127.0.0.1:8188"}, "POST"),
    ({"Host": "evil.example:8188", "Origin": "http://evil.example:8188"}, "POST"),  # DNS rebinding
    ({"Host": "evil.example:8188", "Origin": None}, "GET"),
    ({"Host": None}, "POST"),
    ({"X-Magi1-Request": None}, "POST"),
    ({"X-Magi1-Request": None}, "DELETE"),
    ({"Origin": "null"}, "DELETE"),
    ({"Origin": "http://evil.example"}, "GET"),
])
def test_the_key_route_refuses_requests_that_are_not_from_comfyuis_own_page(change, method):
    headers = {k: v for k, v in {**OWN, **change}.items() if v is not None}
    assert key_routes.request_refusal(method, headers, content_type="application/json") is not None


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
def test_the_key_route_takes_json_only(content_type):
    assert key_routes.request_refusal("POST", OWN, content_type=content_type) is not None


@pytest.mark.parametrize("host, origin", [
    ("127.0.0.1:8188", "http://127.0.0.1:8188"), ("localhost:8188", "http://localhost:8188"),
    ("[::1]:8188", "http://[::1]:8188"), ("192.168.1.5:8188", "http://192.168.1.5:8188"),
    ("localhost", "http://localhost"), ("10.0.0.2", "https://10.0.0.2"),
    ("mybox:8188", "http://mybox:8188"),  # a name ComfyUI was told to --listen on
])
def test_the_key_route_accepts_comfyuis_own_page(host, origin):
    headers = {**OWN, "Host": host, "Origin": origin}
    assert key_routes.request_refusal("POST", headers, own_names={"mybox"}, content_type="application/json") is None
    assert key_routes.request_refusal("GET", {"Host": host}, own_names={"mybox"}) is None


# === 4. the service's answers ============================================================================
@pytest.mark.parametrize("answered", ["../../escape", "..", "a/b", "a\\b", "x" * 200, "id with space", "ﾘ" * 8, ""])
def test_a_submit_answering_a_task_id_that_is_not_one_is_not_trusted(api, answered):
    api.route("/api/v3/wavespeed-ai/magi-1-24b", json_answer({"id": answered, "status": "created"}))
    with pytest.raises(SubmitUncertainError):
        client_for(api).submit({"prompt": "x", "seed": 1})


@pytest.mark.parametrize("answered", ["fedcba9876543210fedcba9876543210", "../../escape", TASK + "/.."])
def test_a_result_about_another_task_is_a_clear_error_naming_both(api, answered):
    api.route(f"/api/v3/predictions/{TASK}/result", json_answer(completed(answered)))
    with pytest.raises(UnexpectedTaskIdError) as caught:
        client_for(api).get_result(TASK)
    assert TASK in str(caught.value) and repr(answered)[:40] in str(caught.value)


@pytest.mark.parametrize("pasted", ["../../etc", "a/b", "..", "id%2F..", "١٢٣٤", "tâche", "x" * 129])
def test_a_pasted_task_id_that_is_not_one_is_refused_before_any_call(api, pasted):
    with pytest.raises(InputError):
        params.parse_task_ids(pasted)
    with pytest.raises(UnexpectedTaskIdError):
        client_for(api).get_result(pasted)
    assert api.seen == []


def test_a_hostile_task_id_never_becomes_a_file_name(tmp_path):
    ctx = pipeline.Context(output_dir=tmp_path / "output", private_dir=tmp_path / "private")
    with pytest.raises(InputError):
        pipeline.save_video(ctx, "https://cdn.example.com/v.mp4", task_id="../../escape")
    assert not (tmp_path / "escape.mp4").exists() and not list(tmp_path.rglob("*escape*"))


def test_waiting_on_a_task_answered_with_another_id_names_both_instead_of_a_key_error(api, tmp_path, monkeypatch):
    other = "fedcba9876543210fedcba9876543210"
    api.route(f"/api/v3/predictions/{TASK}/result", json_answer(completed(other, [f"{api.url}/v.mp4"])))
    monkeypatch.setenv("WAVESPEED_BASE_URL", api.url)
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    ctx = pipeline.Context(output_dir=tmp_path / "output", private_dir=tmp_path / "private")
    with pytest.raises(UnexpectedTaskIdError, match=f"{TASK}.*{other}"):
        asyncio.run(pipeline.wait_and_save(ctx, [TASK], timeout_s=10, interval_s=0.2))
    assert not (tmp_path / "output").exists() or not list((tmp_path / "output").rglob("*.mp4"))


@FAST_SETTINGS
@given(st.from_regex(task_ids.TASK_ID_PATTERN, fullmatch=True))
def test_every_id_the_pattern_allows_stays_inside_the_video_folder(task_id):
    folder = Path("/srv/output/magi1")
    path = (folder / f"magi1_{task_id}.mp4").resolve()
    assert path.parent == folder and params.parse_task_ids(task_id) == [task_id]


@FAST_SETTINGS
@given(st.text(max_size=140))
def test_the_task_id_pattern_accepts_only_safe_ascii(text):
    if task_ids.is_task_id(text):
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", text) and not text.startswith(("-", "_"))
        assert "/" not in text and "\\" not in text and ".." not in text


# --- headers that drive a wait ----------------------------------------------------------------------------
def retry_after_of(api, value: str, *, now: float | None = None) -> float | None:
    api.route("/r", lambda seen: (429, {"Retry-After": value}, b""))
    with requests.get(api.url + "/r", timeout=5) as response:
        return _retry_after(response, now=now)


@pytest.mark.parametrize("value, expected", [
    ("3", 3.0), ("0", 0.0), ("1.5", 1.5), ("nan", None), ("NaN", None), ("inf", None), ("-inf", None),
    ("-5", None), ("1e308", RETRY_AFTER_MAX_S), ("99999999", RETRY_AFTER_MAX_S), ("soon", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("Wed, 99 Oct 2015 07:28:00 GMT", None),
])
def test_retry_after_is_finite_non_negative_and_capped(api, value, expected):
    assert retry_after_of(api, value) == expected


def test_retry_after_as_an_http_date_counts_from_now_and_is_capped(api):
    now = time.time()
    in_30_s = format_datetime(datetime.fromtimestamp(now, timezone.utc) + timedelta(seconds=30), usegmt=True)
    in_a_year = format_datetime(datetime.fromtimestamp(now, timezone.utc) + timedelta(days=365), usegmt=True)
    assert 28 <= retry_after_of(api, in_30_s, now=now) <= 31
    assert retry_after_of(api, in_a_year, now=now) == RETRY_AFTER_MAX_S


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e308"])
def test_a_poll_answered_429_with_a_hostile_retry_after_waits_a_bounded_time(api, value):
    answers = iter([(429, {"Retry-After": value}, b"{}"),
                    (200, {"Content-Type": "application/json"}, envelope(completed(TASK)))])
    api.route(f"/api/v3/predictions/{TASK}/result", lambda seen: next(answers))
    client = client_for(api, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=30.0))
    assert client.get_result(TASK).is_completed
    assert len(client.sleeps) == 1 and 0 <= client.sleeps[0] <= 30.0


# === 5. prompts ==========================================================================================
INVISIBLE = "\x00\x01\x1f\x7f\u200b\u200c\u200d\u200e\u200f\u202a\u202e\u2066\u2069\ufeff\u2060\u00ad" \
            "\u3164\u115f\u2800\u00a0\u2028\u3000\t\n "


@pytest.mark.parametrize("prompt", ["\x00", "\x00" * 50, "\u200b\u200b", "\u202e\u200f", "\ufeff \u2060",
                                    "\u3164\u3164", "\u2800", "\x00\n\u200b\t"])
def test_a_prompt_of_only_invisible_or_control_characters_is_refused(prompt):
    with pytest.raises(InputError, match="invisible|empty"):
        params.build_request(prompt, 1)


@FAST_SETTINGS
@given(st.text(alphabet=INVISIBLE, min_size=1, max_size=30))
def test_any_prompt_made_of_invisible_characters_is_refused(prompt):
    with pytest.raises(InputError):
        params.build_request(prompt, 1)


@FAST_SETTINGS
@given(st.text(alphabet=INVISIBLE, max_size=10), st.text(alphabet="abcXYZ日本語🙂é", min_size=1, max_size=10))
def test_a_prompt_with_something_visible_is_kept_as_written(noise, words):
    assert params.build_request(noise + words + noise, 1).prompt == (noise + words + noise).strip()


@FAST_SETTINGS
@given(seed=st.integers(-10, 2**32), frames=st.integers(-5, 300), fps=st.integers(-5, 60))
def test_parameters_are_accepted_exactly_within_the_documented_ranges(seed, frames, fps):
    valid = (-1 <= seed <= params.SEED_MAX and (frames == 0 or 96 <= frames <= 192) and (fps == 0 or 5 <= fps <= 30))
    try:
        request = params.build_request("a kite", seed, num_frames=frames, frames_per_second=fps)
    except InputError:
        assert not valid
    else:
        assert valid and (request.seed, request.num_frames, request.frames_per_second) == (seed, frames, fps)


@FAST_SETTINGS
@given(value=st.one_of(st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.none()))
def test_a_seed_that_is_not_a_whole_number_in_range_is_an_input_error(value):
    """Never a raw OverflowError or ValueError (inf, nan): a float holding a whole number counts as it."""
    in_range = isinstance(value, float) and value.is_integer() and -1 <= value <= params.SEED_MAX
    try:
        request = params.build_request("a kite", value)
    except InputError:
        assert not in_range
    else:
        assert in_range and request.seed == int(value)


# === 6. dependencies =====================================================================================
# Known vulnerabilities below these floors (PyPA advisory database):
# requests < 2.32.4: CVE-2024-47081, .netrc credentials sent to a third-party host;
# opencv-python < 4.8.1.78: its wheels bundle libwebp with CVE-2023-4863 (heap overflow, exploited).
SAFE_FLOORS = {"requests": Version("2.32.4"), "opencv-python": Version("4.8.1.78")}


def floors(requirements: list[str]) -> dict[str, Version]:
    found = {}
    for line in requirements:
        requirement = Requirement(line)
        lows = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
        found[requirement.name.lower()] = max(lows) if lows else Version("0")
    return found


def test_pyproject_dependencies_exclude_releases_with_known_vulnerabilities():
    declared = floors(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    for name, safe in SAFE_FLOORS.items():
        assert declared[name] >= safe, f"{name} floor {declared[name]} admits vulnerable releases (< {safe})"


def test_requirements_txt_excludes_the_requests_credential_leak():
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert floors([line for line in lines if line])["requests"] >= SAFE_FLOORS["requests"]


def test_requirements_txt_excludes_opencv_wheels_with_the_libwebp_overflow():
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert floors([line for line in lines if line])["opencv-python"] >= SAFE_FLOORS["opencv-python"]


# === local-file policy helpers (pure) ====================================================================
@pytest.mark.parametrize("raw, clean", [('"C:\\v\\a.mp4"', "C:\\v\\a.mp4"), ("'a.mp4'", "a.mp4"),
                                        ('  "a.mp4"  ', "a.mp4"), ('"a.mp4', '"a.mp4'), ("a.mp4", "a.mp4")])
def test_one_pair_of_surrounding_quotes_is_removed(raw, clean):
    assert local_files.unquote(raw) == clean
