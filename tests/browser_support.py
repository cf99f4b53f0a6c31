"""Driving ComfyUI's front end in Debian's chromium through Playwright's sync API, for test_browser.py.

`ComfyPage` wraps one Playwright page on one ComfyUI server with the few things the browser tests
do: open the app, find nodes in the search box, open the settings and the template browser, load
and run a workflow with the Run button, and read what a node shows (its status text, its video).
Reading goes through the page's own objects (`window.app`) and the DOM the user sees; nothing here
imports ComfyUI.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_ROOT / "examples"
SCREENSHOT_DIR = REPO_ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)
VIEWPORT = {"width": 1400, "height": 900}
EXTENSION_NAME = "WaveSpeed.MAGI1"
PACK_FOLDER = "comfyui-magi1"  # the custom_nodes/ folder name the harness gives this repo
# The template browser: a PrimeVue dialog with this class in the 0.3.75 front end, a dialog holding
# the same card grid (data-testid "template-workflows-content") in 0.33.0's 1.49.6.
TEMPLATE_DIALOG = (".workflow-template-selector-dialog, "
                   "[role='dialog']:has([data-testid='template-filter-bar'])")
# A modal's backdrop: PrimeVue's mask (0.3.75's front end), the dialog overlay (1.49.6).
DIALOG_MASK = ".p-dialog-mask, [data-testid='dialog-overlay']"
# The Run button: inside the element with this test id (0.3.75's front end), or that element (1.49.6).
RUN_BUTTON = "[data-testid='queue-button'] button, button[data-testid='queue-button']"
# The settings dialog: PrimeVue's (0.3.75's front end), a plain dialog element (1.49.6).
SETTINGS_DIALOG = ".settings-container, .p-dialog, [role='dialog']"
# The node search box (double-click on the canvas) and its results, in either front end.
NODE_SEARCH_INPUT = ".comfy-vue-node-search-box input, input[placeholder='Add a node...']"
NODE_SEARCH_RESULT = "li.p-autocomplete-option, [data-testid='result-item']"
NODE_SEARCH_PREVIEW = ".comfy-vue-node-preview-container, [data-testid='result-item']"
NODE_LIBRARY_INPUT = "input.search-box-input, input[placeholder='Search...']"
APP_READY_TIMEOUT_MS = 60_000
UI_TIMEOUT_MS = 15_000

# Set on the server before the page opens: no first-run template dialog, no minimap over the graph.
FRONT_END_SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
}
# Browser storage the page starts with: the "try Nodes 2.0" banner stays dismissed.
INITIAL_LOCAL_STORAGE = {"vueNodesBannerDismissed": "true"}


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium (never a Playwright download), headless, with the flags this machine needs.

    Installed here, on first use, by scripts/install_browser.sh: only a run with browser tests needs it.
    """
    if not CHROMIUM.exists():
        installer = REPO_ROOT / "scripts" / "install_browser.sh"
        done = subprocess.run(["bash", str(installer)], capture_output=True, text=True, timeout=900)
        if done.returncode != 0 or not CHROMIUM.exists():
            pytest.fail(f"{CHROMIUM} is missing and {installer} could not install Debian's chromium "
                        f"package:\n{done.stderr[-2000:]}", pytrace=False)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_FLAGS), headless=True)


def prepare_front_end(server: Any) -> None:
    for setting, value in FRONT_END_SETTINGS.items():
        server.post(f"/settings/{setting}", json=value).raise_for_status()


def example_names() -> list[str]:
    return sorted(path.stem for path in EXAMPLES_DIR.glob("*.json"))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def save_screenshot(target: Any, name: str) -> Path:
    """docs/screenshots/<name>.png of a page, or of one element (a Playwright locator)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    target.screenshot(path=str(path), animations="disabled")
    return path


class ComfyPage:
    """One browser tab on one ComfyUI server."""

    def __init__(self, page: Any, server: Any) -> None:
        self.page = page
        self.server = server
        self.errors: list[str] = []  # uncaught exceptions in the page
        page.on("pageerror", lambda error: self.errors.append(f"{error}\n{getattr(error, 'stack', '')}"))
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.add_init_script(
            "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});"
                    for k, v in INITIAL_LOCAL_STORAGE.items()))

    # --- the app --------------------------------------------------------------------------------
    def open(self) -> ComfyPage:
        prepare_front_end(self.server)
        self.page.goto(self.server.url)
        self.page.wait_for_function(
            """(name) => window.app?.graph && window.app.extensionManager
                && (window.app.extensions || []).some((e) => e.name === name)
                && window.LiteGraph?.registered_node_types?.Magi1Poll""",
            arg=EXTENSION_NAME, timeout=APP_READY_TIMEOUT_MS)
        self.close_dialogs()
        return self

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def our_errors(self) -> list[str]:
        """Uncaught page errors raised from this pack's web code."""
        return [error for error in self.errors if "magi1" in error.lower()]

    def close_dialogs(self) -> None:
        for _ in range(3):
            if not self.page.locator(DIALOG_MASK).count():
                return
            self.page.keyboard.press("Escape")
            time.sleep(0.2)

    def new_blank_workflow(self) -> None:
        self.page.evaluate("() => app.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
        self.page.wait_for_function("() => app.graph.nodes.length === 0")

    def settle(self, seconds: float = 0.4) -> None:
        """Let the canvas draw (it repaints on animation frames)."""
        self.js("() => app.graph.setDirtyCanvas(true, true)")
        time.sleep(seconds)

    # --- node search -----------------------------------------------------------------------------
    def search_nodes(self, query: str, at: tuple[float, float] = (0.5, 0.55)) -> list[dict[str, str]]:
        """Double-click the canvas at `at` (fractions of its size; an empty spot: a new node lands
        there) to open the node search box, type `query`: the results."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        box = self.page.locator("#graph-canvas").bounding_box()
        search = self.page.locator(NODE_SEARCH_INPUT).first
        spot = (box["x"] + box["width"] * at[0], box["y"] + box["height"] * at[1])
        for attempt in range(3):  # a double click the canvas takes for two single clicks opens nothing
            self.page.mouse.move(*spot)
            self.settle()
            if attempt < 2:
                self.page.mouse.dblclick(*spot)
            else:  # then the front end's own command (the pointer is at the spot)
                self.js("() => app.extensionManager.command.execute('Workspace.SearchBox.Toggle')")
            try:
                search.wait_for(timeout=3000)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
        search.fill(query)
        options = self.page.locator(NODE_SEARCH_RESULT)
        options.first.wait_for()
        time.sleep(0.5)  # the preview of the highlighted node renders next to the list
        results = []
        for option in options.all():
            if option.get_attribute("data-testid") == "result-item":  # 1.49.6: lines of text
                lines = [line.strip() for line in option.inner_text().splitlines() if line.strip()]
                results.append({"name": lines[0], "source": lines[1], "category": lines[2]})
            else:
                results.append({"name": option.get_attribute("aria-label"),
                                "category": _one_line(option.locator(".option-category").inner_text()),
                                "source": _one_line(option.locator(".option-badges").inner_text())})
        return results

    def add_search_result(self, text: str, at: tuple[float, float]) -> None:
        """Click the search result showing `text`. 1.49.6 then hangs the new node on the pointer
        until a click places it (Escape would drop it): click at `at` (where 0.3.75 already put it)."""
        self.page.locator(NODE_SEARCH_RESULT).filter(has_text=text).first.click()
        box = self.page.locator("#graph-canvas").bounding_box()
        spot = (box["x"] + box["width"] * at[0], box["y"] + box["height"] * at[1])
        self.page.mouse.move(*spot)
        self.page.mouse.click(*spot)

    # --- node library --------------------------------------------------------------------------
    def open_node_library(self, query: str) -> None:
        self.js("() => app.extensionManager.sidebarTab.toggleSidebarTab('node-library')")
        self.page.locator(NODE_LIBRARY_INPUT).first.fill(query)

    def node_library(self) -> Any:
        """The node library panel (0.3.75's front end); the page in 1.49.6, whose panel has no mark."""
        panel = self.page.locator(".side-bar-panel, .sidebar-content-container")
        return panel.first if panel.count() else self.page.locator("body")

    def close_sidebar(self) -> None:
        self.js("""() => { const s = app.extensionManager.sidebarTab;
                           if (s.activeSidebarTabId) s.toggleSidebarTab(s.activeSidebarTabId); }""")

    # --- settings -------------------------------------------------------------------------------
    def open_settings(self, category: str) -> None:
        self.js("() => { app.extensionManager.command.execute('Comfy.ShowSettingsDialog') }")
        self.page.locator(SETTINGS_DIALOG).get_by_text(category, exact=True).first.click()

    # --- templates ------------------------------------------------------------------------------
    def open_templates(self, module: str = PACK_FOLDER) -> Any:
        """The template browser on the entry of custom node pack `module`; returns its card grid."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        dialog = self.page.locator(TEMPLATE_DIALOG).first
        for attempt in (1, 2):
            # Once in a full run on 1.49.6 the command opened nothing (the previous template dialog
            # was still closing): ask a second time before calling it a failure.
            self.js("() => { app.extensionManager.command.execute('Comfy.BrowseTemplates') }")
            try:
                dialog.wait_for(timeout=15_000)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
        entry = dialog.get_by_text(module, exact=True).first
        entry.wait_for()
        # 1.49.6 lists the packs below a long category list that animates while it fills: a
        # pointer click waits for a stable box (and can time out), a DOM click does not need one.
        entry.evaluate("(element) => element.scrollIntoView({block: 'center'})")
        entry.dispatch_event("click")
        grid = dialog.get_by_test_id("template-workflows-content")
        grid.wait_for()
        return grid

    def load_template(self, name: str, module: str = PACK_FOLDER) -> None:
        grid = self.open_templates(module)
        card = grid.get_by_test_id(f"template-workflow-{name}")
        card.wait_for()
        card.dispatch_event("click")  # its thumbnail zooms on hover: no stable box for a pointer click
        self.page.locator(TEMPLATE_DIALOG).first.wait_for(state="detached")
        self.page.wait_for_function("() => app.graph.nodes.some((n) => n.type === 'Magi1Submit')")

    # --- graph ----------------------------------------------------------------------------------
    def node_ids(self, node_type: str) -> list[int]:
        return self.js("(t) => app.graph.nodes.filter((n) => n.type === t).map((n) => n.id)", node_type)

    def set_widget(self, node_id: int, name: str, value: Any) -> None:
        found = self.js(
            """([id, name, value]) => {
                const widget = app.graph.getNodeById(id)?.widgets?.find((w) => w.name === name);
                if (!widget) return false;
                widget.value = value;
                widget.callback?.(value);
                return true;
            }""", [node_id, name, value])
        assert found, f"node {node_id} has no widget {name!r}"

    def run(self) -> str:
        """Press Run; the prompt id ComfyUI answered with."""
        with self.page.expect_response(
                lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST") as answer:
            self.page.locator(RUN_BUTTON).filter(has_text="Run").first.click()
        body = answer.value.json()
        assert answer.value.ok, f"ComfyUI refused the prompt: {body}"
        return body["prompt_id"]

    def progress_text(self, node_id: int) -> str | None:
        """The status text ComfyUI shows on a node (send_progress_text), or None."""
        return self.js(
            """(id) => app.graph.getNodeById(id)?.widgets
                ?.find((w) => w.name === '$$node-text-preview')?.value ?? null""", node_id)

    def wait_for_progress_text(self, node_id: int, pattern: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.progress_text(node_id)
            if seen and re.search(pattern, seen):
                return seen
            time.sleep(0.05)
        raise AssertionError(f"node {node_id} never showed status text matching {pattern!r}; last: {seen!r}")

    def video_state(self, node_id: int) -> dict | None:
        """The preview <video> ComfyUI put in the node: its URL and how far it has loaded."""
        return self.js(
            """(id) => {
                const video = app.graph.getNodeById(id)?.videoContainer?.querySelector('video');
                if (!video) return null;
                const box = video.getBoundingClientRect();
                return {src: video.currentSrc, readyState: video.readyState, duration: video.duration,
                        width: video.videoWidth, height: video.videoHeight, error: video.error?.message ?? null,
                        connected: video.isConnected, shownWidth: box.width, shownHeight: box.height};
            }""", node_id)

    def wait_for_playable_video(self, node_id: int, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.video_state(node_id)
            if state and state["readyState"] >= 2 and state["width"] > 0 and (state["duration"] or 0) > 0:
                return state
            time.sleep(0.1)
        raise AssertionError(f"node {node_id} has no playable <video> after {timeout:.0f} s: {state}")

    def focus_nodes(self, node_types: tuple[str, ...], *, max_scale: float = 1.0, margin: float = 40.0) -> float:
        """Centre the canvas on the nodes of these types, as large as fits (at most `max_scale`).

        Below about 60 % LiteGraph draws nodes without text: the screenshots need a readable zoom,
        so the view is fitted to the nodes that matter rather than to the whole graph.
        """
        return self.js(
            """([types, maxScale, margin]) => {
                const nodes = app.graph.nodes.filter((n) => types.includes(n.type));
                const title = LiteGraph.NODE_TITLE_HEIGHT;
                const left = Math.min(...nodes.map((n) => n.pos[0])) - margin;
                const top = Math.min(...nodes.map((n) => n.pos[1] - title)) - margin;
                const right = Math.max(...nodes.map((n) => n.pos[0] + n.size[0])) + margin;
                const bottom = Math.max(...nodes.map((n) => n.pos[1] + n.size[1])) + margin;
                const view = app.canvas.canvas.getBoundingClientRect();
                const scale = Math.min(maxScale, view.width / (right - left), view.height / (bottom - top));
                const ds = app.canvas.ds;
                ds.scale = scale;
                ds.offset[0] = (view.width / scale - (right - left)) / 2 - left;
                ds.offset[1] = (view.height / scale - (bottom - top)) / 2 - top;
                app.graph.setDirtyCanvas(true, true);
                return scale;
            }""", [list(node_types), max_scale, margin])

    # --- what the browser keeps -------------------------------------------------------------------
    def browser_storage(self) -> str:
        """Everything in localStorage, sessionStorage and cookies, as one text."""
        return self.js("""() => JSON.stringify({
            local: Object.fromEntries(Object.entries(localStorage)),
            session: Object.fromEntries(Object.entries(sessionStorage)),
            cookies: document.cookie})""")

    def save_workflow(self, filename: str) -> None:
        """Save the open workflow under the user's workflows, as Workflow › Save does."""
        self.js("() => { app.extensionManager.command.execute('Comfy.SaveWorkflow') }")
        name = self.page.locator(".p-dialog input, [role='dialog'] input").first
        name.fill(filename)
        name.press("Enter")
        self.page.wait_for_function(
            "(f) => app.extensionManager.workflow.activeWorkflow?.path?.endsWith(f + '.json')", arg=filename)
