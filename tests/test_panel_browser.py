"""The MAGI-1 panel in ComfyUI's own front end, in Debian's chromium driven by Playwright.

What a user sees: a "MAGI-1" tab in the sidebar listing the tasks of a run while it runs (then
saved, with a first-frame thumbnail), "Add to graph" giving a Magi1LoadVideo node that plays the
clip with its controls in view, "Collect now" saving a task nobody waited for, the account with
the balance, the panel's settings next to the key, and the spend guard's refusal as a toast.
The screenshot docs/screenshots/magi1-panel.png is taken here for the README.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import requests

from browser_support import ComfyPage, save_screenshot

TAB_ID = "magi1-tasks"


def write_headers(server) -> dict:
    """What ComfyUI's own page sends with a write: the custom header and its own Origin."""
    return {"X-Magi1-Request": "1", "Origin": server.url}
SLOW_LATENCY_S = 4.0
_seeds = iter(range(700_000, 10**7))


@pytest.fixture
def slow_emulator(comfyui) -> Iterator:
    before = comfyui.emulator.latency
    comfyui.emulator.set_latency(SLOW_LATENCY_S)
    yield comfyui.emulator
    comfyui.emulator.set_latency(before)


def open_panel(ui: ComfyPage):
    """Click the sidebar's MAGI-1 button (open it if it is closed); the panel's element."""
    button = ui.page.locator(f".{TAB_ID}-tab-button").first
    panel = ui.page.locator("[data-magi1=panel]")
    if not panel.count():
        button.click()
    panel.wait_for()
    return panel


def graph(*, prompt: str, poll: bool = True, batch: int = 0) -> dict:
    seed = next(_seeds)
    submit = {"prompt": prompt, "seed": seed, "resolution": "480p"}
    nodes = {}
    if batch:
        nodes["img"] = {"class_type": "EmptyImage",
                        "inputs": {"width": 320, "height": 240, "batch_size": batch, "color": 0x224466}}
        submit["image"] = ["img", 0]
    nodes["submit"] = {"class_type": "Magi1Submit", "inputs": submit}
    if poll:
        nodes["poll"] = {"class_type": "Magi1Poll",
                         "inputs": {"task": ["submit", 0], "timeout_s": 120, "poll_interval_s": 0.3}}
    else:
        nodes["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["submit", 1]}}
    return nodes


def task_ids(server) -> list[str]:
    """The ledger's task ids, newest first (claims that have no task id yet left out)."""
    rows = server.get("/magi1/tasks", params={"limit": 20}).json()["tasks"]
    return [r["task_id"] for r in rows if r["task_id"]]


def newest_task_id(server) -> str:
    return task_ids(server)[0]


def wait_for_new_task(server, known: set[str], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [t for t in task_ids(server) if t not in known]
        if fresh:
            return fresh[0]
        time.sleep(0.1)
    raise AssertionError("no new task in the ledger")


def row(ui: ComfyPage, task_id: str):
    return ui.page.locator(f'[data-magi1=task-list] [data-task-id="{task_id}"]')


def queue_from_the_page(ui: ComfyPage) -> str:
    """Queue the open workflow as the Run button does (app.queuePrompt, on both front ends); its id."""
    with ui.page.expect_response(
            lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST") as answer:
        ui.js("() => { app.queuePrompt(0, 1); }")
    assert answer.value.ok, answer.value.text()
    return answer.value.json()["prompt_id"]


def emulator_has_balance(comfyui) -> bool:
    probe = requests.get(f"{comfyui.emulator.base_url}/api/v3/balance",
                         headers={"Authorization": f"Bearer {comfyui.emulator.api_key}"}, timeout=10)
    return probe.status_code == 200


# --- the list ------------------------------------------------------------------------------------
def test_the_panel_lists_a_run_s_task_while_it_runs_then_saved_with_a_thumbnail(ui, comfyui, slow_emulator):
    server = comfyui.server
    ui.new_blank_workflow()
    open_panel(ui)
    before = set(task_ids(server))
    prompt_id = server.queue(graph(prompt="a heron lifting off a misty pond"))
    task_id = wait_for_new_task(server, before)

    entry = row(ui, task_id)
    entry.wait_for(timeout=10_000)  # from the magi1.task event: no reload, no click
    assert entry.get_attribute("data-state") in ("running", "waiting", "submitting")
    assert "a heron lifting off a misty pond" in entry.inner_text()
    ui.page.locator(f'[data-task-id="{task_id}"][data-state="saved"]').wait_for(timeout=60_000)
    server.wait(prompt_id, timeout=60)
    text = entry.inner_text()
    assert "saved" in text and "480p" in text and re.search(r"took \d+ s", text)
    ui.page.wait_for_function(
        """(id) => { const img = document.querySelector(`[data-task-id="${id}"] img.magi1-thumb`);
                     return img && img.complete && img.naturalWidth > 0; }""", arg=task_id)
    assert ui.our_errors() == []


def test_collect_now_saves_a_task_nobody_waited_for(ui, comfyui):
    server = comfyui.server
    open_panel(ui)
    server.run(graph(prompt="a submit without a poll", poll=False), timeout=60)
    task_id = newest_task_id(server)
    entry = row(ui, task_id)
    entry.locator("[data-action=collect]").click()
    ui.page.locator(f'[data-task-id="{task_id}"][data-state="saved"]').wait_for(timeout=60_000)
    assert entry.locator("[data-action=play]").count() == 1
    assert ui.our_errors() == []


def test_add_to_graph_gives_a_load_video_node_that_plays_the_clip(ui, comfyui):
    server = comfyui.server
    server.run(graph(prompt="a tram crossing a bridge at night"), timeout=120)
    task_id = newest_task_id(server)
    ui.new_blank_workflow()
    open_panel(ui)
    row(ui, task_id).locator("[data-action=add]").click()
    ui.page.wait_for_function("() => app.graph.nodes.some((n) => n.type === 'Magi1LoadVideo')")
    [node_id] = ui.node_ids("Magi1LoadVideo")
    saved = server.output_dir / "magi1" / f"magi1_{task_id}.mp4"
    assert ui.js("(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'video_url').value",
                 node_id) == str(saved)
    assert ui.js("(id) => app.graph.getNodeById(id).size[0]", node_id) >= 420
    server.wait(queue_from_the_page(ui), timeout=60)
    state = ui.wait_for_playable_video(node_id, timeout=60)
    assert state["src"].endswith(f"magi1_{task_id}.mp4&subfolder=magi1&type=output") or task_id in state["src"]
    assert state["shownWidth"] >= 360  # wide enough for the player's controls, duration included
    assert ui.our_errors() == []


# --- the account ---------------------------------------------------------------------------------
def test_the_account_shows_the_balance_and_today_s_tasks(ui, comfyui):
    open_panel(ui)
    account = ui.page.locator("[data-magi1=account]")
    ui.page.locator("[data-magi1=account][data-state=ok]").wait_for()
    assert re.search(r"Tasks today / this month\s*\d+ / \d+", account.inner_text())
    if not emulator_has_balance(comfyui):
        pytest.xfail("needs the emulator's GET /api/v3/balance (issue 8, H8); passes after that merge")
    account.get_by_title("Check the balance now").click()
    balance = account.locator("[data-magi1=balance]")
    ui.page.wait_for_function("() => /^\\$\\d/.test(document.querySelector('[data-magi1=balance]').textContent)")
    assert balance.inner_text().startswith("$")


def test_panel_screenshot_for_the_readme(ui, comfyui):
    """The panel with a few saved tasks next to a graph: docs/screenshots/magi1-panel.png."""
    server = comfyui.server
    comfyui.emulator.add_fault("submit", "fail_task", error="the prompt was refused by moderation", code=1200)
    server.wait(server.queue(graph(prompt="a prompt the service refuses")), timeout=120, check=False)
    for prompt in ("a lighthouse in a storm, waves breaking", "a fox running through snow"):
        server.run(graph(prompt=prompt), timeout=120)
    # A price and a cap, so the account block shows the spend figure and the slots.
    server.post("/magi1/settings", headers=write_headers(server),
                json={"price_per_task_usd": 0.3, "account_max_running": 3}).raise_for_status()
    request_cleanup = lambda: server.post("/magi1/settings", headers=write_headers(server),  # noqa: E731
                                          json={"price_per_task_usd": None, "account_max_running": None})
    ui.new_blank_workflow()
    open_panel(ui)
    ui.page.locator("[data-magi1=account][data-state=ok]").wait_for()
    newest = newest_task_id(server)
    ui.page.wait_for_function(
        """(id) => { const img = document.querySelector(`[data-task-id="${id}"] img.magi1-thumb`);
                     return img && img.complete && img.naturalWidth > 0; }""", arg=newest)
    row(ui, newest).locator("[data-action=add]").click()
    [node_id] = ui.node_ids("Magi1LoadVideo")
    server.wait(queue_from_the_page(ui), timeout=60)
    ui.wait_for_playable_video(node_id, timeout=60)
    ui.page.locator(".p-toast-message").first.wait_for(state="detached", timeout=10_000)
    ui.focus_nodes(("Magi1LoadVideo",), max_scale=1.0, margin=200)
    ui.settle(0.8)
    try:
        assert "at your $0.30 per task" in ui.page.locator("[data-magi1=account]").inner_text()
        refused = ui.page.locator('[data-magi1=task-list] [data-state="failed"]', has_text="a prompt the service refuses")
        assert "refused by moderation" in refused.first.inner_text()
        path = save_screenshot(ui.page, "magi1-panel")
    finally:
        request_cleanup()
    assert path.stat().st_size > 10_000


# --- settings and the spend guard --------------------------------------------------------------------
def test_the_panel_settings_sit_next_to_the_key_and_are_stored_on_the_server(ui, comfyui):
    server = comfyui.server
    ui.js("() => { app.extensionManager.command.execute('Comfy.ShowSettingsDialog') }")
    # The category in the dialog's navigation (its markup differs between the two front ends).
    ui.page.get_by_text("WaveSpeed MAGI-1", exact=True).first.click()
    try:
        price = ui.page.locator("[data-magi1=setting-price_per_task_usd]")
        price.wait_for()
        price.fill("0.35")
        price.press("Enter")
        price.blur()
        ui.page.wait_for_function(
            "() => document.querySelector('[data-magi1=setting-price_per_task_usd]')"
            ".parentElement.textContent.includes('Saved on the ComfyUI server')")
        assert server.get("/magi1/settings").json()["values"]["price_per_task_usd"] == pytest.approx(0.35)
        assert ui.page.locator("[data-magi1=key-input]").count() == 1  # the key's field, same dialog
    finally:
        ui.page.keyboard.press("Escape")
        server.post("/magi1/settings", headers=write_headers(server), json={"price_per_task_usd": None})


def test_the_spend_guard_refusal_is_a_toast(ui, comfyui):
    server = comfyui.server
    comfyui.emulator.reset()
    server.post("/magi1/settings", headers=write_headers(server), json={"max_tasks_per_run": 2}).raise_for_status()
    try:
        ui.new_blank_workflow()
        ui.js("(g) => app.loadApiJson(g, 'spend guard')", graph(prompt="one task per frame", batch=3))
        ui.page.wait_for_function("() => app.graph.nodes.some((n) => n.type === 'Magi1Submit')")
        queue_from_the_page(ui)
        toast = ui.page.locator(".p-toast-message").filter(has_text=re.compile("spend guard", re.I))
        try:
            toast.first.wait_for(timeout=30_000)
        except Exception:
            submitted = [e for e in comfyui.emulator.journal() if e["route"] == "submit"]
            if submitted:
                pytest.xfail(f"no spend guard on this branch ({len(submitted)} tasks were submitted): "
                             "it comes with issue 8 (H8); this test passes after that merge")
            raise
        assert [e for e in comfyui.emulator.journal() if e["route"] == "submit"] == []
    finally:
        server.post("/magi1/settings", headers=write_headers(server), json={"max_tasks_per_run": None})
