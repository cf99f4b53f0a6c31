"""A real ComfyUI in a child process, for tests, the demo and benchmarks: isolated, on loopback,
with the pack loaded, on either ComfyUI version scripts/bootstrap.sh lays out (`comfyui_versions()`).

Each server gets its own base directory (custom_nodes/ holding symlinks to the packs, models/,
input/, output/, temp/, user/, a SQLite database): ComfyUI's `--base-directory` points there, so
the shared ComfyUI tree is only read, never written (byte-code goes to `<tree>/../pycache` via
PYTHONPYCACHEPREFIX). No ComfyUI code is imported into the test process.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "comfyui-magi1"
DEFAULT_COMFYUI_DIR = Path.home() / ".cache" / "comfyui-magi1" / "ComfyUI-0.3.75"
# The ComfyUI releases every real-ComfyUI test runs on, with the variables scripts/env.sh exports
# for each: (version, tree variable, python variable). The first is the default one.
VERSION_VARIABLES = (
    ("0.3.75", "MAGI1_COMFYUI_DIR", "MAGI1_PYTHON"),
    ("0.33.0", "MAGI1_COMFYUI_033_DIR", "MAGI1_PYTHON_033"),
)
START_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 60
# Inherited variables that must never reach a test server: a developer's real key or proxy.
SCRUBBED_ENV_PREFIXES = ("WAVESPEED_", "MAGI1_OUTPUT_DIR", "MAGI1_TEMP_DIR", "MAGI1_USER_DIR")

BOOTSTRAP_HINT = (
    "Run scripts/bootstrap.sh --comfyui-033 once (it lays out ComfyUI 0.3.75 and 0.33.0 and builds "
    "a venv for each in ~/.cache/comfyui-magi1; `source scripts/env.sh --comfyui-033` exports "
    "what it prints), then run pytest with MAGI1_PYTHON."
)


class ComfyUIUnavailable(RuntimeError):
    """The ComfyUI tree or its Python packages are missing here."""


class ComfyUIStartError(RuntimeError):
    """ComfyUI did not come up; the message ends with its log tail."""


class PromptRejected(RuntimeError):
    """POST /prompt refused the graph (validation). `.details` is ComfyUI's JSON answer."""

    def __init__(self, message: str, details: dict) -> None:
        super().__init__(message)
        self.details = details


class PromptFailed(RuntimeError):
    """The prompt ran and failed. `.entry` is its /history entry, `.error` the execution_error data."""

    def __init__(self, message: str, entry: dict, error: dict | None) -> None:
        super().__init__(message)
        self.entry = entry
        self.error = error


class PromptInterrupted(PromptFailed):
    """The prompt ended with execution_interrupted (the Cancel button)."""


@dataclass(frozen=True)
class ComfyUIVersion:
    """One ComfyUI release laid out by scripts/bootstrap.sh: its tree and the python of its venv.

    `comfy_dir` / `python` are None when the environment does not name them (not bootstrapped).
    """

    version: str
    comfy_dir: Path | None
    python: str | None
    tree_variable: str
    python_variable: str

    @property
    def test_id(self) -> str:
        """The pytest id: "comfyui_0_33_0" (dots would not survive `pytest -k`)."""
        return "comfyui_" + self.version.replace(".", "_")


def comfyui_versions() -> list[ComfyUIVersion]:
    """Every ComfyUI version the tests run on, oldest first, as the environment names them.

    The first (0.3.75) falls back to ~/.cache/comfyui-magi1/ComfyUI-0.3.75 and this python.
    """
    versions = []
    for index, (version, tree_variable, python_variable) in enumerate(VERSION_VARIABLES):
        tree = os.environ.get(tree_variable) or (str(DEFAULT_COMFYUI_DIR) if index == 0 else "")
        python = os.environ.get(python_variable) or (sys.executable if index == 0 else "")
        versions.append(ComfyUIVersion(version, Path(tree) if tree else None, python or None,
                                       tree_variable, python_variable))
    return versions


def comfyui_dir() -> Path:
    return Path(os.environ.get("MAGI1_COMFYUI_DIR") or DEFAULT_COMFYUI_DIR)


_checked_pythons: set[str] = set()


def check_prerequisites(comfy_dir: Path | None = None, python: str | None = None) -> None:
    """Raise ComfyUIUnavailable naming what is missing and how to get it.

    `python` (default: this interpreter) is the one that will run ComfyUI; another one is asked
    in a child process, once per process.
    """
    comfy_dir = comfy_dir or comfyui_dir()
    python = python or sys.executable
    if not (comfy_dir / "main.py").is_file():
        raise ComfyUIUnavailable(f"No ComfyUI tree at {comfy_dir}. {BOOTSTRAP_HINT}")
    needed = ("torch", "torchvision", "aiohttp", "av")
    if python == sys.executable:
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
    elif python in _checked_pythons:
        missing = []
    else:
        probe = ("import importlib.util, sys; "
                 "print(' '.join(n for n in sys.argv[1:] if importlib.util.find_spec(n) is None))")
        try:
            answer = subprocess.run([python, "-c", probe, *needed], capture_output=True, text=True,
                                    timeout=60, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ComfyUIUnavailable(f"Cannot run {python} ({exc}). {BOOTSTRAP_HINT}") from exc
        missing = answer.stdout.split()
        if not missing:
            _checked_pythons.add(python)
    if missing:
        raise ComfyUIUnavailable(
            f"{python} cannot import {', '.join(missing)}, which ComfyUI needs. {BOOTSTRAP_HINT}"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- history entries ------------------------------------------------------------------------------
def status_messages(entry: dict) -> list[tuple[str, dict]]:
    """The executor's messages in a /history entry: [(event, data), …] in order."""
    return [(event, data) for event, data in (entry.get("status") or {}).get("messages", [])]


def status_message(entry: dict, event: str) -> dict | None:
    """The data of the first `event` message (e.g. "execution_error") in a /history entry."""
    return next((data for name, data in status_messages(entry) if name == event), None)


def _describe_error(error: dict) -> str:
    trace = "".join(error.get("traceback") or [])[-2000:]
    return (f"node {error.get('node_id')} ({error.get('node_type')}) raised "
            f"{error.get('exception_type')}: {error.get('exception_message', '').strip()}\n{trace}")


class ComfyUIServer:
    """One ComfyUI process. Use as a context manager, or call start() and stop().

    `workdir` holds everything the server writes (default: a new temporary folder, kept).
    `packs` maps a folder name under custom_nodes/ to the pack directory it links to
    (default: this repo as "comfyui-magi1"); `env` is added to the child's environment, after
    inherited WAVESPEED_* variables are removed. `version` (a ComfyUIVersion) picks the tree and
    the python that runs it; `comfy_dir` / `python` alone override either (default: 0.3.75 with
    this interpreter).
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        packs: Mapping[str, Path] | None = None,
        env: Mapping[str, str] | None = None,
        comfy_dir: Path | None = None,
        python: str | None = None,
        version: ComfyUIVersion | None = None,
        extra_args: tuple[str, ...] = (),
        api_nodes: bool = False,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        if version is not None:
            if version.comfy_dir is None or version.python is None:
                raise ComfyUIUnavailable(
                    f"ComfyUI {version.version} is not set up here: {version.tree_variable} and "
                    f"{version.python_variable} are not set. {BOOTSTRAP_HINT}")
            comfy_dir, python = comfy_dir or version.comfy_dir, python or version.python
        self.version = version.version if version is not None else None
        self.comfy_dir = Path(comfy_dir or comfyui_dir())
        self.python = python or sys.executable
        self.base_dir = Path(workdir or tempfile.mkdtemp(prefix="comfyui-magi1-"))
        self.packs = dict(packs) if packs is not None else {PACK_NAME: REPO_ROOT}
        self.extra_env = dict(env or {})
        # ComfyUI's own paid API nodes: not needed here, they slow the start and reach the internet.
        self.extra_args = tuple(extra_args) + (() if api_nodes else ("--disable-api-nodes",))
        self.start_timeout = start_timeout
        self.output_dir = self.base_dir / "output"
        self.input_dir = self.base_dir / "input"
        self.temp_dir = self.base_dir / "temp"  # ComfyUI appends "temp" to --temp-directory
        self.user_dir = self.base_dir / "user"
        self.custom_nodes_dir = self.base_dir / "custom_nodes"
        self.log_path = self.base_dir / "comfyui.log"
        self.port: int | None = None
        self.start_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self._http = requests.Session()

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> ComfyUIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _layout(self) -> None:
        for folder in (self.output_dir, self.input_dir, self.user_dir, self.custom_nodes_dir,
                       self.base_dir / "models"):
            folder.mkdir(parents=True, exist_ok=True)
        for name, pack in self.packs.items():
            link = self.custom_nodes_dir / name
            if not link.exists():
                link.symlink_to(Path(pack).resolve(), target_is_directory=True)

    def _command(self) -> list[str]:
        return [
            self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--disable-auto-launch",
            "--base-directory", str(self.base_dir),
            "--output-directory", str(self.output_dir),
            "--input-directory", str(self.input_dir),
            "--temp-directory", str(self.base_dir),
            "--user-directory", str(self.user_dir),
            "--database-url", f"sqlite:///{self.base_dir / 'comfyui.db'}",
            *self.extra_args,
        ]

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
        # Byte-code goes to a cache beside the tree, never into the tree or the repo; caching it
        # cuts ComfyUI's start from ~16 s to ~6 s here, so an inherited "don't write" is lifted.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update({
            "PYTHONUNBUFFERED": "1",
            "PYTHONPYCACHEPREFIX": str(self.comfy_dir.parent / "pycache"),
            "NO_PROXY": "127.0.0.1,localhost,::1",
            "no_proxy": "127.0.0.1,localhost,::1",
        })
        env.update(self.extra_env)
        return env

    def start(self) -> ComfyUIServer:
        check_prerequisites(self.comfy_dir, self.python)
        self._layout()
        for attempt in range(3):  # a free port can be taken between probing and binding
            self.port = _free_port()
            began = time.monotonic()
            self._log_file = open(self.log_path, "ab")
            self._log_file.write(f"\n=== harness: starting ComfyUI on port {self.port} ===\n".encode())
            self._log_file.flush()
            self._process = subprocess.Popen(
                self._command(), cwd=self.comfy_dir, env=self._environment(),
                stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                self._wait_ready(began)
            except ComfyUIStartError:
                port_taken = "address already in use" in self.log_text().lower()
                self.stop()
                if port_taken and attempt < 2:
                    continue
                raise
            self.start_seconds = time.monotonic() - began
            return self
        raise AssertionError("unreachable")

    def _wait_ready(self, began: float) -> None:
        deadline = began + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ComfyUIStartError(
                    f"ComfyUI exited with code {self._process.returncode} while starting.\n{self.log_tail()}")
            try:
                if self._http.get(f"{self.url}/object_info", timeout=10).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise ComfyUIStartError(
            f"ComfyUI did not answer /object_info within {self.start_timeout:.0f} s.\n{self.log_tail()}")

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # its own session: ComfyUI and any child it spawned
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL the server and its children at once, as a crash or a power cut would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # --- logs -----------------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}\n--- end of ComfyUI log ---"

    def _ensure_alive(self) -> None:
        if not self.is_running():
            raise ComfyUIStartError(f"ComfyUI is not running.\n{self.log_tail()}")

    # --- HTTP -----------------------------------------------------------------------------------
    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self._http.get(f"{self.url}{path}", **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self._http.post(f"{self.url}{path}", **kwargs)

    def object_info(self, node_class: str | None = None) -> dict:
        """GET /object_info (all nodes), or the entry of one node class."""
        if node_class is None:
            answer = self.get("/object_info")
            answer.raise_for_status()
            return answer.json()
        answer = self.get(f"/object_info/{node_class}")
        answer.raise_for_status()
        return answer.json().get(node_class, {})

    def queue(self, api_prompt: dict, *, client_id: str | None = None,
              extra_data: dict | None = None) -> str:
        """POST /prompt; the prompt id. PromptRejected with ComfyUI's node_errors when invalid."""
        self._ensure_alive()
        body: dict[str, Any] = {"prompt": api_prompt}
        if client_id is not None:
            body["client_id"] = client_id
        if extra_data:
            body["extra_data"] = extra_data
        answer = self.post("/prompt", json=body)
        if answer.status_code != 200:
            try:
                details = answer.json()
            except ValueError:
                details = {"error": answer.text}
            raise PromptRejected(
                f"ComfyUI refused the prompt (HTTP {answer.status_code}): "
                f"{json.dumps(details, indent=1)[:4000]}", details)
        return answer.json()["prompt_id"]

    def history(self, prompt_id: str | None = None) -> dict:
        """GET /history/{id} → that entry ({} while it runs); without an id, every entry."""
        if prompt_id is None:
            return self.get("/history").json()
        return self.get(f"/history/{prompt_id}").json().get(prompt_id, {})

    def wait(self, prompt_id: str, timeout: float = 120.0, *, check: bool = True) -> dict:
        """The /history entry once the prompt has finished.

        With check (the default) a failure raises PromptFailed (PromptInterrupted after Cancel)
        carrying the execution_error and ComfyUI's log tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry.get("status", {}).get("status_str") in ("success", "error"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Prompt {prompt_id} not finished after {timeout:.0f} s; queue: "
                    f"{self.get('/queue').text[:1000]}\n{self.log_tail()}")
            self._ensure_alive()
            time.sleep(0.05)
        if check and entry["status"]["status_str"] != "success":
            error = status_message(entry, "execution_error")
            if error is None and status_message(entry, "execution_interrupted") is not None:
                raise PromptInterrupted(f"Prompt {prompt_id} was interrupted.\n{self.log_tail()}",
                                        entry, None)
            what = _describe_error(error) if error else json.dumps(status_messages(entry))[:2000]
            raise PromptFailed(f"Prompt {prompt_id} failed: {what}\n{self.log_tail()}", entry, error)
        return entry

    def run(self, api_prompt: dict, timeout: float = 120.0, **queue_kwargs: Any) -> dict:
        """queue() then wait(): the successful /history entry."""
        return self.wait(self.queue(api_prompt, **queue_kwargs), timeout)

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt: the Cancel button (for one prompt id when given)."""
        self.post("/interrupt", json={"prompt_id": prompt_id} if prompt_id else {}).raise_for_status()

    def clear_cache(self) -> None:
        """Forget cached node outputs (POST /free), so an identical prompt runs its nodes again."""
        deadline = time.monotonic() + 30
        while self.get("/queue").json().get("queue_running") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.post("/free", json={"free_memory": True}).raise_for_status()
        time.sleep(0.3)  # the idle worker wakes on the flag and resets its executor

    def websocket(self, client_id: str | None = None) -> WebSocketRecorder:
        """A connected /ws client recording every message; queue(…, client_id=rec.client_id)."""
        return WebSocketRecorder(self.url, client_id or uuid.uuid4().hex).start()


# --- websocket ------------------------------------------------------------------------------------
class WebSocketRecorder:
    """Records what the front end would receive: JSON events and progress text, with arrival times."""

    TEXT_EVENT = 3  # server.BinaryEventTypes.TEXT: send_progress_text

    def __init__(self, base_url: str, client_id: str) -> None:
        self.url = base_url.replace("http://", "ws://") + f"/ws?clientId={client_id}"
        self.client_id = client_id
        self.events: list[tuple[float, str, Any]] = []  # (monotonic time, type, data)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="comfyui-ws", daemon=True)
        self._failure: BaseException | None = None

    def __enter__(self) -> WebSocketRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> WebSocketRecorder:
        self._thread.start()
        if not self._connected.wait(15):
            raise RuntimeError(f"Could not connect to {self.url}: {self._failure!r}")
        return self

    def _run(self) -> None:
        import aiohttp  # ComfyUI's own dependency, present in its venv

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(self.url, heartbeat=20) as ws:
                    self._connected.set()
                    receiving = asyncio.ensure_future(self._receive(ws))
                    await self._stop.wait()
                    receiving.cancel()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._failure = exc
            self._connected.set()

    async def _receive(self, ws: Any) -> None:
        import aiohttp

        async for message in ws:
            now = time.monotonic()
            if message.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(message.data)
                self._record(now, event.get("type"), event.get("data"))
            elif message.type == aiohttp.WSMsgType.BINARY:
                payload = message.data
                kind = int.from_bytes(payload[:4], "big")
                if kind == self.TEXT_EVENT:
                    length = int.from_bytes(payload[4:8], "big")
                    node_id = payload[8:8 + length].decode()
                    self._record(now, "progress_text", {"node": node_id,
                                                        "text": payload[8 + length:].decode()})
                else:
                    self._record(now, f"binary:{kind}", None)

    def _record(self, when: float, kind: str, data: Any) -> None:
        with self._lock:
            self.events.append((when, kind, data))

    def of_type(self, kind: str) -> list[Any]:
        with self._lock:
            return [data for _, kind_, data in self.events if kind_ == kind]

    def wait_for(self, predicate: Callable[[str, Any], bool], timeout: float = 30.0) -> tuple[str, Any]:
        """Block until a recorded (type, data) satisfies predicate; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for _, kind, data in self.events:
                    if predicate(kind, data):
                        return kind, data
            time.sleep(0.02)
        raise TimeoutError(f"No matching websocket message in {timeout} s; got "
                           f"{[kind for _, kind, _ in self.events][-30:]}")

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop has just ended on its own
                pass
        self._thread.join(10)


# --- UI-format workflow → API-format prompt -------------------------------------------------------
# COMFY_DYNAMICCOMBO_V3: a combo whose choice adds inputs (0.33.0's SaveVideo `codec`); its own
# value is one widget value, like a combo's (the sub-inputs of a choice are not supported here).
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "COMFY_DYNAMICCOMBO_V3"})
SEED_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
SKIPPED_NODE_TYPES = frozenset({"Note", "MarkdownNote", "PrimitiveNode", "Reroute"})
MODE_MUTED, MODE_BYPASSED = 2, 4


def _is_widget(spec: list) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput") or options.get("rawLink"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _widget_inputs(node_info: dict) -> list[tuple[str, list]]:
    """The node's widget inputs in the order the front end creates its widgets."""
    inputs = node_info.get("input", {})
    order = node_info.get("input_order") or {k: list(v) for k, v in inputs.items()}
    found = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = inputs.get(section, {}).get(name)
            if spec is not None and _is_widget(spec):
                found.append((name, spec))
    return found


def _has_control_widget(name: str, spec: list) -> bool:
    """The front end adds a "control after generate" widget after seeds and flagged inputs."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "control_after_generate" in options:
        return bool(options["control_after_generate"])
    return spec[0] == "INT" and name in ("seed", "noise_seed")


def workflow_to_prompt(workflow: dict, object_info: dict) -> dict:
    """A UI-format workflow (examples/*.json, as the front end saves it) → an API-format prompt.

    Handles widget values (as a list or a dict), the extra "control after generate" and image
    upload widget values, links, Reroute nodes, PrimitiveNode (its value is already in the target's
    widget values), notes, muted and bypassed nodes. Subgraphs are not supported.
    """
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise NotImplementedError("workflows with subgraphs are not supported by this converter")
    nodes = {str(node["id"]): node for node in workflow["nodes"]}
    links = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            link_id, origin, slot = link["id"], link["origin_id"], link["origin_slot"]
        else:
            link_id, origin, slot = link[0], link[1], link[2]
        links[link_id] = (str(origin), slot)

    def source_of(link_id: int) -> list | None:
        """Follow a link through reroutes and bypassed nodes to [node id, output slot]."""
        seen = set()
        while link_id is not None and link_id in links and link_id not in seen:
            seen.add(link_id)
            origin, slot = links[link_id]
            node = nodes.get(origin)
            if node is None or node.get("mode") == MODE_MUTED:
                return None
            if node["type"] == "Reroute":
                link_id = (node.get("inputs") or [{}])[0].get("link")
                continue
            if node["type"] == "PrimitiveNode":
                return None  # its value sits in the target's widgets_values
            if node.get("mode") == MODE_BYPASSED:
                out_type = (node.get("outputs") or [])[slot].get("type") if node.get("outputs") else None
                passthrough = [i for i in node.get("inputs", []) if i.get("link") is not None
                               and i.get("type") == out_type]
                if not passthrough:
                    return None
                link_id = passthrough[0]["link"]
                continue
            return [origin, slot]
        return None

    prompt: dict[str, dict] = {}
    for node_id, node in nodes.items():
        kind = node["type"]
        if kind in SKIPPED_NODE_TYPES or node.get("mode") in (MODE_MUTED, MODE_BYPASSED):
            continue
        if kind not in object_info:
            raise KeyError(f"node {node_id}: type {kind!r} is not known to this ComfyUI")
        info = object_info[kind]
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if isinstance(values, dict):
            for name, _spec in _widget_inputs(info):
                if name in values:
                    inputs[name] = values[name]
        elif values:
            position = 0
            for name, spec in _widget_inputs(info):
                if position >= len(values):
                    break
                inputs[name] = values[position]
                position += 1
                if _has_control_widget(name, spec) and position < len(values) \
                        and values[position] in SEED_CONTROL_VALUES:
                    position += 1
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if (options.get("image_upload") or options.get("video_upload")) \
                        and position < len(values) and values[position] in ("image", "video"):
                    position += 1
        for socket_ in node.get("inputs", []):
            if socket_.get("link") is None:
                continue
            source = source_of(socket_["link"])
            if source is not None:
                inputs[socket_["name"]] = source
            elif socket_["name"] not in inputs or socket_.get("widget") is None:
                inputs.pop(socket_["name"], None)
        prompt[node_id] = {"class_type": kind, "inputs": inputs,
                           "_meta": {"title": node.get("title") or kind}}
    return prompt
