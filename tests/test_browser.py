"""The pack in ComfyUI's own front end, in Debian's chromium driven by Playwright.

What a user sees: the three nodes in the node search and the node library (under WaveSpeed/MAGI-1,
with their descriptions), the examples in the template browser with thumbnails, each example run
(as loaded, on a fresh ComfyUI) with the Run button showing the wait's status on Magi1Poll and then a playable video on Magi1Poll
and Magi1LoadVideo, and the API-key setting: stored on the server, used for the calls, and found
nowhere else (workflow, browser storage, ComfyUI's settings file, history, page, log).

Every test runs on ComfyUI 0.3.75 (front end 1.3x) and 0.33.0 (front end 1.49.6). The tests write
the screenshots in docs/screenshots/ that the README shows, from 0.3.75 (SCREENSHOT_VERSION).
"""
from __future__ import annotations

import json
import re
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from browser_support import (
    EXAMPLES_DIR,
    NODE_SEARCH_INPUT,
    NODE_SEARCH_PREVIEW,
    PACK_FOLDER,
    TEMPLATE_DIALOG,
    VIEWPORT,
    ComfyPage,
    example_names,
    save_screenshot as _save_screenshot,
)
from tools.comfyui_harness import ComfyUIServer, status_message

NODE_TYPES = ("Magi1Submit", "Magi1Poll", "Magi1LoadVideo")
VIDEO_NODE_TYPES = ("Magi1Poll", "Magi1LoadVideo")
CATEGORY = "WaveSpeed/MAGI-1"
SCREENSHOT_EXAMPLE = "magi1_text_to_video"
WAIT_LATENCY_S = 4.0  # long enough to see the status text change, short enough for a test
POLL_INTERVAL_S = 0.5
RUN_TIMEOUT_S = 180
WAITING_TEXT = r"^(created|processing) · \d+ s"
SCREENSHOT_NODE_TYPES = ("Magi1Submit", "Magi1Poll", "Magi1LoadVideo")
SEED_MAX = 2_147_483_647
SCREENSHOT_VERSION = "0.3.75"  # the README's screenshots; the other version's runs take none


def save_screenshot(ui: ComfyPage, target, name: str) -> None:
    """docs/screenshots/<name>.png, from the ComfyUI version the README shows."""
    if ui.server.version == SCREENSHOT_VERSION:
        _save_screenshot(target, name)


def pytest_generate_tests(metafunc):
    if "example" in metafunc.fixturenames:
        metafunc.parametrize("example", example_names())


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def slow_emulator(comfyui) -> Iterator:
    """Tasks that take a few seconds, so the wait is there to be seen; the latency is restored after."""
    before = comfyui.emulator.latency
    comfyui.emulator.set_latency(WAIT_LATENCY_S)
    yield comfyui.emulator
    comfyui.emulator.set_latency(before)


@dataclass
class KeylessComfyUI:
    server: ComfyUIServer
    emulator: object
    key: str  # the only key the emulator accepts; ComfyUI does not have it until the settings send it


@pytest.fixture(scope="module")
def keyless(tmp_path_factory, comfyui_version) -> Iterator[KeylessComfyUI]:
    """ComfyUI (each version) with no key in its environment, before an emulator accepting one key only."""
    from tools.wavespeed_emulator import EmulatorServer

    key = "ws-browser-test-" + secrets.token_hex(12)
    emulator = EmulatorServer(port=0, latency=1.0, default_resolution="480p", api_key=key).start()
    server = ComfyUIServer(tmp_path_factory.mktemp("comfyui-keyless"), version=comfyui_version,
                           env={"WAVESPEED_BASE_URL": emulator.base_url})
    try:
        server.start()
        yield KeylessComfyUI(server, emulator, key)
    finally:
        server.stop()
        emulator.stop()


# --- helpers ------------------------------------------------------------------------------------
def saved_user_file(server: ComfyUIServer, path: str, timeout: float = 15.0) -> str:
    """A file the page saved under the user's data, read back through ComfyUI's /userdata route
    (where it is stored differs between versions); waits for the save to land."""
    from urllib.parse import quote

    deadline = time.monotonic() + timeout
    while True:
        answer = server.get(f"/api/userdata/{quote(path, safe='')}")
        if answer.status_code == 200 or time.monotonic() > deadline:
            assert answer.status_code == 200, f"{path} was not saved: HTTP {answer.status_code}"
            return answer.text
        time.sleep(0.2)


def node_info(server: ComfyUIServer) -> dict[str, dict]:
    return {node_type: server.object_info(node_type) for node_type in NODE_TYPES}


def prepare_example_run(ui: ComfyPage) -> None:
    """New seeds (new tasks, so there is a wait to watch) and a short poll interval."""
    for node_id in ui.node_ids("Magi1Submit"):
        ui.set_widget(node_id, "seed", secrets.randbelow(SEED_MAX) + 1)
    for node_id in ui.node_ids("Magi1Poll"):
        ui.set_widget(node_id, "poll_interval_s", POLL_INTERVAL_S)


def output_file(server: ComfyUIServer, view_url: str) -> Path:
    query = dict(re.findall(r"[?&](filename|subfolder|type)=([^&]*)", view_url))
    assert query.get("type") == "output", view_url
    from urllib.parse import unquote

    return server.output_dir / unquote(query.get("subfolder", "")) / unquote(query["filename"])


def write_mpeg4_part2(path: Path) -> None:
    """An MP4 that ComfyUI decodes but browsers cannot play (MPEG-4 Part 2 video)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (320, 240))
    assert writer.isOpened(), "this OpenCV cannot write MPEG-4 Part 2"
    for value in range(0, 240, 10):
        writer.write(np.full((240, 320, 3), value, np.uint8))
    writer.release()


# --- finding the nodes ---------------------------------------------------------------------------
def test_node_search_finds_the_three_nodes_under_wavespeed_magi1(ui, comfyui):
    infos = node_info(comfyui.server)
    ui.new_blank_workflow()

    results = ui.search_nodes("MAGI-1")
    first_description = infos[next(t for t, i in infos.items() if i["display_name"] == results[0]["name"])]
    preview = ui.page.locator(NODE_SEARCH_PREVIEW)  # 1.49.6 shows it in the result itself
    preview.get_by_text(first_description["description"][:60]).first.wait_for()
    save_screenshot(ui, ui.page, "node-search")
    ui.page.keyboard.press("Escape")

    found = {result["name"]: result["category"] for result in results}
    for node_type, info in infos.items():
        assert info["category"] == CATEGORY, node_type
        assert info["display_name"] in found, f"{node_type} not in the search results {found}"
        # "WaveSpeed > MAGI-1" in 0.3.75's front end, "WaveSpeed / MAGI-1" in 1.49.6
        assert re.sub(r"\s*[>/]\s*", "/", found[info["display_name"]]) == CATEGORY
    assert {result["source"] for result in results} == {PACK_FOLDER}
    assert ui.our_errors() == []


def test_nodes_added_from_the_search_start_with_a_fixed_seed_and_room_for_the_status(ui):
    """Every new seed is a new, billed task: a new Submit node does not change its seed by itself."""
    ui.new_blank_workflow()
    for count, (query, spot) in enumerate((("MAGI-1 Submit", (0.2, 0.3)), ("MAGI-1 Wait for Video", (0.6, 0.3))), 1):
        ui.search_nodes(query, at=spot)
        ui.add_search_result(query, at=spot)
        ui.page.wait_for_function("(n) => app.graph.nodes.length === n", arg=count)
        ui.page.locator(NODE_SEARCH_INPUT).first.wait_for(state="hidden")
    mode = ui.js("""() => app.graph.nodes.find((n) => n.type === 'Magi1Submit')
                        .widgets.find((w) => w.name === 'seed').linkedWidgets?.[0]?.value""")
    assert mode == "fixed"
    assert ui.js("() => app.graph.nodes.find((n) => n.type === 'Magi1Poll').size[0]") >= 340
    assert ui.our_errors() == []


def test_node_library_shows_them_under_wavespeed_magi1_with_descriptions(ui, comfyui):
    infos = node_info(comfyui.server)
    ui.new_blank_workflow()
    ui.open_node_library("MAGI-1")
    try:
        library = ui.node_library()
        library.get_by_text("WaveSpeed", exact=True).wait_for()
        library.get_by_text("MAGI-1", exact=True).wait_for()
        for node_type in ("Magi1Submit", "Magi1LoadVideo", "Magi1Poll"):  # Poll last: the screenshot
            info = infos[node_type]
            library.get_by_text(info["display_name"], exact=True).hover()
            ui.page.get_by_text(info["description"][:60]).first.wait_for()
        save_screenshot(ui, ui.page, "node-library")
    finally:
        ui.page.mouse.move(VIEWPORT["width"] - 10, VIEWPORT["height"] - 10)
        ui.close_sidebar()


def test_examples_are_in_the_template_browser_with_thumbnails(ui):
    names = example_names()
    assert names, f"no example workflows in {EXAMPLES_DIR}"
    grid = ui.open_templates()
    try:
        cards = grid.locator("[data-testid^='template-workflow-']")
        cards.first.wait_for()
        shown = sorted(card.get_attribute("data-testid").removeprefix("template-workflow-") for card in cards.all())
        assert shown == names
        for name in names:
            thumbnail = grid.get_by_test_id(f"template-workflow-{name}").locator("img").first
            thumbnail.wait_for()
            ui.page.wait_for_function("(img) => img.complete", arg=thumbnail.element_handle())
            assert thumbnail.evaluate("(img) => img.naturalWidth") > 0, f"{name}.jpg did not load"
        save_screenshot(ui, ui.page.locator(TEMPLATE_DIALOG).first, "templates")
    finally:
        ui.close_dialogs()


# --- running the examples ------------------------------------------------------------------------
def test_example_shows_status_while_waiting_then_a_playable_video(ui, comfyui, slow_emulator, example):
    # As loaded from the template browser on a fresh ComfyUI: nothing is copied into its input
    # folder by the test (the pack put the first frame there at start).
    ui.load_template(example)
    prepare_example_run(ui)
    ui.focus_nodes(SCREENSHOT_NODE_TYPES)
    polls = ui.node_ids("Magi1Poll")
    assert polls, f"{example} has no Magi1Poll"

    prompt_id = ui.run()

    waiting = ui.wait_for_progress_text(polls[0], WAITING_TEXT, timeout=60)
    task_line = waiting.splitlines()[-1]
    assert re.fullmatch(r"task [0-9a-z-]{8,}.*", task_line), waiting
    # Seen in the page, not just held by the widget.
    ui.page.get_by_text(re.compile(r"(created|processing) · \d+ s")).first.wait_for()
    if example == SCREENSHOT_EXAMPLE:
        ui.wait_for_progress_text(polls[0], r"^processing · [1-9]", timeout=30)
        ui.settle(0.2)
        save_screenshot(ui, ui.page, "status-text")

    entry = comfyui.server.wait(prompt_id, timeout=RUN_TIMEOUT_S)
    assert entry["status"]["status_str"] == "success"

    for node_type in VIDEO_NODE_TYPES:
        for node_id in ui.node_ids(node_type):
            video = ui.wait_for_playable_video(node_id)
            assert video["connected"] and video["shownWidth"] > 50 and video["shownHeight"] > 30, video
            assert video["error"] is None, video
            saved = output_file(comfyui.server, video["src"])
            assert saved.suffix == ".mp4" and saved.is_file(), saved
    for node_id in polls:
        assert ui.progress_text(node_id).startswith("done"), ui.progress_text(node_id)
    if example == SCREENSHOT_EXAMPLE:
        ui.js("""() => document.querySelectorAll('.comfy-img-preview video')
                 .forEach((v) => { v.currentTime = Math.min(1.5, v.duration / 2); })""")
        ui.settle(0.6)
        save_screenshot(ui, ui.page, "video-preview")
    assert ui.our_errors() == []


def test_a_video_this_browser_cannot_play_gets_a_note_with_a_link(ui, comfyui):
    unplayable = comfyui.server.output_dir / "magi1-browser-test" / f"mpeg4-{secrets.token_hex(4)}.mp4"
    write_mpeg4_part2(unplayable)
    ui.new_blank_workflow()
    load = ui.js(
        """(path) => {
            const load = LiteGraph.createNode('Magi1LoadVideo');
            load.pos = [100, 100];
            app.graph.add(load);
            load.widgets.find((w) => w.name === 'video_url').value = path;
            const preview = LiteGraph.createNode('PreviewImage');
            preview.pos = [520, 100];
            app.graph.add(preview);
            load.connect(1, preview, 0);
            return load.id;
        }""", str(unplayable))

    comfyui.server.wait(ui.run(), timeout=RUN_TIMEOUT_S)

    note = ui.page.locator("[data-magi1='preview-note']")
    note.wait_for()
    assert unplayable.name in note.inner_text()
    href = note.locator("a").get_attribute("href")
    assert output_file(comfyui.server, href) == unplayable
    assert ui.video_state(load) is None  # ComfyUI's own preview gave up on it
    assert ui.our_errors() == []


# --- the API key setting -------------------------------------------------------------------------
def test_settings_entry_says_when_the_environment_key_wins(ui, comfyui):
    ui.open_settings("WaveSpeed MAGI-1")
    try:
        status = ui.page.locator("[data-magi1='key-status']")
        ui.page.wait_for_function("(el) => el.dataset.state === 'environment'", arg=status.element_handle())
        text = status.inner_text()
        assert "WAVESPEED_API_KEY" in text and comfyui.emulator.api_key[-4:] in text
        assert comfyui.emulator.api_key not in ui.page.content()
    finally:
        ui.close_dialogs()


def test_api_key_from_settings_is_used_and_kept_only_on_the_server(browser, keyless):
    server, key = keyless.server, keyless.key
    context = browser.new_context(viewport=VIEWPORT)
    ui = ComfyPage(context.new_page(), server).open()
    try:
        # Without a key, a run stops with an error that says how to set one.
        ui.load_template(SCREENSHOT_EXAMPLE)
        prepare_example_run(ui)
        failed = server.wait(ui.run(), timeout=RUN_TIMEOUT_S, check=False)
        error = status_message(failed, "execution_error")
        assert error and "WAVESPEED_API_KEY" in error["exception_message"], failed
        ui.close_dialogs()

        ui.open_settings("WaveSpeed MAGI-1")
        status = ui.page.locator("[data-magi1='key-status']")
        ui.page.wait_for_function("(el) => el.dataset.state === 'unset'", arg=status.element_handle())
        field = ui.page.locator("[data-magi1='key-input']")
        assert field.get_attribute("type") == "password"
        field.fill(key)
        field.press("Enter")
        ui.page.wait_for_function("(el) => el.dataset.state === 'settings'", arg=status.element_handle())
        assert field.input_value() == ""
        assert key[-4:] in status.inner_text() and key not in ui.page.content()
        save_screenshot(ui, ui.page.locator(".p-dialog, [role='dialog']").filter(has=field).first, "settings-api-key")
        ui.close_dialogs()

        # The key is used: the emulator accepts only this key, and the run succeeds.
        keyless.emulator.reset()
        prepare_example_run(ui)
        server.wait(ui.run(), timeout=RUN_TIMEOUT_S)
        calls = keyless.emulator.journal()
        assert any(call["route"] == "submit" and call["status"] == 200 for call in calls), calls
        assert not any(call["status"] == 401 for call in calls), calls

        # ...and kept nowhere but the server's private key file.
        key_file = server.user_dir / "__magi1" / "wavespeed_api_key"
        assert key_file.read_text().strip() == key
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        ui.save_workflow("magi1-key-check")
        places = {
            "the saved workflow": saved_user_file(server, "workflows/magi1-key-check.json"),
            "the workflow as the page holds it": ui.js("() => JSON.stringify(app.graph.serialize())"),
            "the prompt the page queues": ui.js("async () => JSON.stringify(await app.graphToPrompt())"),
            "browser storage": ui.browser_storage(),
            "the page": ui.page.content(),
            "ComfyUI's settings file": (server.user_dir / "default" / "comfy.settings.json").read_text(),
            "GET /settings": server.get("/settings").text,
            "GET /history": server.get("/history").text,
            "GET /magi1/api_key": server.get("/magi1/api_key").text,
            "ComfyUI's log": server.log_text(),
        }
        assert json.loads(places["GET /magi1/api_key"])["source"] == "settings"
        leaks = [place for place, text in places.items() if key in text]
        assert leaks == [], f"the key was found in {leaks}"

        # Removal from the same entry.
        ui.open_settings("WaveSpeed MAGI-1")
        ui.page.wait_for_function("(el) => el.dataset.state === 'settings'", arg=status.element_handle())
        ui.page.locator("[data-magi1='key-remove']").click()
        ui.page.wait_for_function("(el) => el.dataset.state === 'unset'", arg=status.element_handle())
        assert not key_file.exists()
        assert server.get("/magi1/api_key").json()["set"] is False
        assert ui.our_errors() == []
    finally:
        context.close()
