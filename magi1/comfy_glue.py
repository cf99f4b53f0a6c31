"""The one module that touches ComfyUI: directories, progress, cancel, previews, events, routes.

Everything else in the pack runs (and is tested) without ComfyUI. Outside ComfyUI every function
here falls back to something harmless (directories from the environment, progress to the log, a
local interrupt flag) and this module says once, in the log, why. Nothing here raises at import.

What ComfyUI 0.3.75 does, read from its source (the reasons behind the choices below):

- Async nodes: `execution.py` calls a node function that is `async def` through
  `asyncio.create_task(...)` inside `CurrentNodeContext`, yields once (`asyncio.sleep(0)`), and
  if the task is not done marks the node PENDING behind an "external block" and goes on staging
  other ready nodes; async nodes are even picked first. So independent branches that each await
  run concurrently on the executor's event loop (one `asyncio.run` per prompt, in the prompt
  worker thread: NOT the server's loop). When one task raises, the run stops and `asyncio.run`
  cancels the other pending tasks on exit (CancelledError inside them).
- `comfy.utils.ProgressBar(total, node_id=None)`: the hook installed by main.py takes `node_id`
  from the argument, else from the `get_executing_context()` contextvar (set per task, so it is
  right per node even for concurrent async nodes, and inside `asyncio.to_thread`, which copies
  the context; not in a bare `threading.Thread`), else `server.last_node_id` (wrong under
  concurrency). We pass `node_id` explicitly. The hook calls
  `throw_exception_if_processing_interrupted()` first: every `update_absolute` is a cancel
  checkpoint, but only when a server installed the hook.
- `PromptServer.instance.send_progress_text(text, node_id, sid=None)` exists: a binary websocket
  message (type 3) that the front end shows as a read-only text preview on that node.
- `comfy.model_management.processing_interrupted()` only reads the flag;
  `throw_exception_if_processing_interrupted()` CLEARS it and raises `InterruptProcessingException`.
  Raised from an async node it is re-raised when the executor collects the task and reported as
  `execution_interrupted` (status_str "error") in `/history`; any other exception (including the
  API nodes' own `ProcessingInterrupted`) shows as `execution_error`.
- V1 hidden inputs `{"hidden": {"unique_id": "UNIQUE_ID"}}` still work (execution.get_input_data).
- VideoFromFile: `comfy_api.latest.InputImpl.VideoFromFile`; `comfy_api.input_impl.VideoFromFile`
  is kept "for backwards compatibility" (older ComfyUI has only that one).
- Core `SaveVideo` returns `ui.PreviewVideo([SavedResult(file, subfolder, "output")])`, whose dict
  is `{"images": [{"filename", "subfolder", "type"}], "animated": (True,)}`.
- Directories: `folder_paths.get_output_directory()`, `get_temp_directory()`,
  `get_user_directory()`; CLI `--base-directory` (exists: models, custom_nodes, input, output,
  temp, user all under it), `--output-directory`, `--temp-directory` (ComfyUI appends "temp"),
  `--input-directory`, `--user-directory` (must already exist), `--database-url`.
- `/userdata` (and `/api/userdata`, `/v2/userdata`) serve only `<user_dir>/<user id>/`; ids are
  "default" or, with --multi-user, "<name>_<uuid4>", and anything starting with "__" is refused:
  `folder_paths.get_system_user_directory("magi1")` = `<user_dir>/__magi1` is never served.
- Routes: `PromptServer.instance.routes.get/post(...)` decorators at the pack's import time;
  main.py copies them (plus an "/api" prefixed twin) into the app after custom nodes load, so a
  route added later is never served.

The V3 node schema (`comfy_api.latest`: `io.ComfyNode`, `ComfyExtension`, `ui.PreviewVideo`), as
0.3.75 and 0.33.0 have it (read from both sources; tests/test_versions.py names each difference):

- Both load a module's `comfy_entrypoint()` (async allowed) when it has no NODE_CLASS_MAPPINGS,
  and take node ids, display names and the V1 `/object_info` view from `define_schema()`.
- `ComfyExtension.on_load()` is awaited by 0.33.0's loader and never called by 0.3.75's: start-up
  work runs in `make_extension()`, called from `comfy_entrypoint()`, which both versions call.
- A V3 output node gets the hidden inputs `prompt` and `extra_pnginfo` added to its schema; a V3
  combo is listed as `["COMBO", {"options": [...]}]` instead of V1's `[[...], {...}]`. Both
  versions do both; the front ends of both read either form.
- `validate_inputs` runs at queue time (POST /prompt) with the inputs it names, only for values
  typed in the prompt (a linked input is absent); a named input skips ComfyUI's own min/max check.
  `fingerprint_inputs` replaces IS_CHANGED. Same on both versions.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PRIVATE_FOLDER = "magi1"  # becomes "<user_dir>/__magi1": ComfyUI's "system user" prefix is never served

try:  # ComfyUI puts its own top-level modules on sys.path; outside it these imports fail.
    import comfy.model_management as _model_management
    import comfy.utils as _comfy_utils
    import folder_paths as _folder_paths

    IN_COMFYUI = True
    _WHY_NOT = ""
except Exception as exc:  # noqa: BLE001 - anything here means "not inside a usable ComfyUI"
    _model_management = _comfy_utils = _folder_paths = None
    IN_COMFYUI = False
    _WHY_NOT = f"{type(exc).__name__}: {exc}"

# The V3 node schema, for nodes/: None outside ComfyUI (the node classes are only defined inside it).
io: Any = None
ui: Any = None
ComfyExtension: Any = None
if IN_COMFYUI:
    try:
        import comfy_api.latest as _v3

        ComfyExtension, io, ui = _v3.ComfyExtension, _v3.io, _v3.ui
    except Exception:  # a ComfyUI without the V3 schema cannot load the nodes
        log.exception("This ComfyUI has no V3 node schema (comfy_api.latest): the MAGI-1 nodes "
                      "need ComfyUI 0.3.75 or newer.")

if IN_COMFYUI:
    INTERRUPT_EXCEPTION: type[Exception] = _model_management.InterruptProcessingException
else:

    class ProcessingInterrupted(Exception):
        """Stand-in for ComfyUI's InterruptProcessingException outside ComfyUI."""

    INTERRUPT_EXCEPTION = ProcessingInterrupted

_standalone_interrupt = threading.Event()
_said_why = False


def _fallback(what: str) -> None:
    """Say once per process why the stand-alone fallbacks are in use."""
    global _said_why
    if not _said_why:
        _said_why = True
        log.info("Not running inside ComfyUI (%s); %s and the rest use stand-alone fallbacks.",
                 _WHY_NOT, what)


def _prompt_server() -> Any | None:
    """The running PromptServer, or None (outside ComfyUI, or ComfyUI imported without a server)."""
    if not IN_COMFYUI:
        return None
    try:
        from server import PromptServer
    except Exception:  # noqa: BLE001
        return None
    return getattr(PromptServer, "instance", None)


# --- directories ----------------------------------------------------------------------------------
def _env_dir(variable: str, default: str) -> Path:
    return Path(os.path.abspath(os.environ.get(variable) or default))  # as written: symlinks kept


def output_directory() -> Path:
    """ComfyUI's output directory; outside ComfyUI $MAGI1_OUTPUT_DIR or ./output."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_output_directory())
    _fallback("output_directory()")
    return _env_dir("MAGI1_OUTPUT_DIR", "output")


def input_directory() -> Path:
    """ComfyUI's input directory (LoadImage's folder); outside ComfyUI $MAGI1_INPUT_DIR or ./input."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_input_directory())
    _fallback("input_directory()")
    return _env_dir("MAGI1_INPUT_DIR", "input")


def provide_input_file(source: str | os.PathLike) -> Path | None:
    """Copy `source` into ComfyUI's input folder under its own name, unless a file is already there.

    For the examples' first frame: a template loaded from the template browser names it in a
    LoadImage node, and a fresh ComfyUI's input folder is empty. An existing file (the user's) is
    never replaced. Returns the path in the input folder, or None when it could not be written (logged).
    """
    source = Path(source)
    target = input_directory() / source.name
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(source.read_bytes())
        os.replace(partial, target)
    except OSError as exc:
        log.warning("Could not put %s into ComfyUI's input folder (%s); the image examples need it "
                    "there: copy it by hand.", source.name, exc)
        return None
    log.info("Put the examples' %s into ComfyUI's input folder (%s).", source.name, target.parent)
    return target


def temp_directory() -> Path:
    """ComfyUI's temp directory (emptied at each start); outside ComfyUI $MAGI1_TEMP_DIR or ./temp."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_temp_directory())
    _fallback("temp_directory()")
    return _env_dir("MAGI1_TEMP_DIR", "temp")


def local_video_roots() -> list[Path]:
    """The folders Magi1LoadVideo may read local videos from: input, output, temp, as configured
    (absolute, symlinks not resolved: magi1.local_files resolves them itself).

    ComfyUI serves all three through `/view` already; outside ComfyUI the environment fallbacks
    ($MAGI1_INPUT_DIR, $MAGI1_OUTPUT_DIR, $MAGI1_TEMP_DIR, else ./input, ./output, ./temp).
    """
    return [Path(os.path.abspath(path)) for path in (input_directory(), output_directory(), temp_directory())]


def server_host_names() -> frozenset[str]:
    """Host names ComfyUI was told to listen on (`--listen`), lower-case; empty outside ComfyUI.

    The key route accepts these in the `Host` header besides IP literals and `localhost`.
    """
    if not IN_COMFYUI:
        return frozenset()
    try:
        from comfy.cli_args import args
    except Exception:  # noqa: BLE001 - an older or unusual ComfyUI: only the built-in names
        return frozenset()
    listen = str(getattr(args, "listen", "") or "")
    return frozenset(name.strip().strip("[]").lower() for name in listen.split(",") if name.strip())


def server_port() -> int | None:
    """The port a running ComfyUI server listens on (`--port`); None outside a running server.

    The URL policy refuses this port on this machine: a workflow must not reach ComfyUI's own
    routes (nor another pack's) through Magi1LoadVideo's URL.
    """
    if _prompt_server() is None:
        return None
    try:
        from comfy.cli_args import args
    except Exception:  # noqa: BLE001 - an older or unusual ComfyUI: no port known
        return None
    port = getattr(args, "port", None)
    return port if isinstance(port, int) else None


def user_directory() -> Path:
    """ComfyUI's user directory root; outside ComfyUI $MAGI1_USER_DIR or ./user."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_user_directory())
    _fallback("user_directory()")
    return _env_dir("MAGI1_USER_DIR", "user")


def private_directory() -> Path:
    """`<user_dir>/__magi1`, mode 0700: the key file and the ledger. Never served over HTTP."""
    path = None
    if IN_COMFYUI and hasattr(_folder_paths, "get_system_user_directory"):
        path = Path(_folder_paths.get_system_user_directory(PRIVATE_FOLDER))
    if path is None:
        path = user_directory() / f"__{PRIVATE_FOLDER}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "posix" and (path.stat().st_mode & 0o777) != 0o700:
        path.chmod(0o700)
    return path


# --- cancel ---------------------------------------------------------------------------------------
def throw_if_interrupted() -> None:
    """Raise ComfyUI's own interrupt exception (reported as `execution_interrupted`) after Cancel.

    Like ComfyUI's, this clears the flag as it raises: check once per wait, then let it propagate.
    """
    if IN_COMFYUI:
        _model_management.throw_exception_if_processing_interrupted()
    elif _standalone_interrupt.is_set():
        _standalone_interrupt.clear()
        raise INTERRUPT_EXCEPTION("Processing interrupted")


# --- progress -------------------------------------------------------------------------------------
def _executing_context() -> Any | None:
    """ComfyUI's ExecutionContext (prompt_id, node_id, list_index) of this task/thread, if any."""
    if not IN_COMFYUI:
        return None
    try:
        from comfy_execution.utils import get_executing_context
    except Exception:  # noqa: BLE001 - older ComfyUI has no execution context
        return None
    return get_executing_context()


def current_node_id() -> str | None:
    """The id of the node executing in this task/thread, when ComfyUI knows it."""
    context = _executing_context()
    return None if context is None else context.node_id


def current_prompt_id() -> str | None:
    """The id of the queued prompt executing in this task/thread (the spend guard's run), if known."""
    context = _executing_context()
    return None if context is None else str(context.prompt_id)


class NodeProgress:
    """The progress bar and status text of one node execution; every update is a cancel checkpoint."""

    def __init__(self, node_id: str | None, total: int) -> None:
        self.node_id = node_id if node_id is not None else current_node_id()
        self.total = max(int(total), 1)
        self.value = 0
        self.text: str | None = None
        self._bar = None
        if IN_COMFYUI:
            self._bar = _comfy_utils.ProgressBar(self.total, node_id=self.node_id)
        else:
            _fallback("NodeProgress")

    def update(self, value: int, text: str | None = None) -> None:
        throw_if_interrupted()
        self.value = min(max(int(value), 0), self.total)
        if self._bar is not None:
            self._bar.update_absolute(self.value)
        else:
            log.debug("node %s: %d/%d %s", self.node_id, self.value, self.total, text or "")
        if text is not None and text != self.text:
            self.text = text
            self._send_text(text)

    def _send_text(self, text: str) -> None:
        _send_progress_text(self.node_id, text)


def _send_progress_text(node_id: str | None, text: str) -> None:
    server = _prompt_server()
    if server is None or node_id is None or not hasattr(server, "send_progress_text"):
        return
    # To the client that queued the prompt (None broadcasts), as the core progress hook does.
    server.send_progress_text(text, node_id, getattr(server, "client_id", None))


def node_status_sender() -> Callable[[str], None]:
    """A function that shows a short text on the node executing now; callable from any thread
    (e.g. "waiting for a slot · 2nd in line" while a submit waits for the account limiter)."""
    node_id = current_node_id()

    def send(text: str) -> None:
        log.info("node %s: %s", node_id, text)
        _send_progress_text(node_id, text)

    return send


# --- results and events ---------------------------------------------------------------------------
_video_from_file_class: Any = None


def video_from_file(path: str | os.PathLike) -> object | None:
    """ComfyUI's VIDEO value over a file (`VideoFromFile`); None outside ComfyUI."""
    global _video_from_file_class
    if not IN_COMFYUI:
        _fallback("video_from_file()")
        return None
    if _video_from_file_class is None:
        try:
            from comfy_api.latest import InputImpl

            _video_from_file_class = InputImpl.VideoFromFile
        except Exception:  # noqa: BLE001 - ComfyUI before comfy_api.latest
            try:
                from comfy_api.input_impl import VideoFromFile
            except Exception as exc:  # noqa: BLE001
                log.warning("This ComfyUI has no VideoFromFile (%s); the VIDEO output is None.", exc)
                return None
            _video_from_file_class = VideoFromFile
    return _video_from_file_class(str(path))


def video_from_frames(frames: Any, fps: float) -> object | None:
    """ComfyUI's VIDEO value over frames already in memory (`VideoFromComponents`, no copy)."""
    if not IN_COMFYUI:
        _fallback("video_from_frames()")
        return None
    try:
        from fractions import Fraction

        from comfy_api.latest import InputImpl, Types
    except Exception as exc:  # noqa: BLE001 - ComfyUI before comfy_api.latest
        log.warning("This ComfyUI has no VideoFromComponents (%s); the VIDEO output is None.", exc)
        return None
    rate = Fraction(fps).limit_denominator(1001)
    return InputImpl.VideoFromComponents(Types.VideoComponents(images=frames, frame_rate=rate))


_task_events_unsubscribe: Callable[[], None] | None = None


def forward_task_events() -> bool:
    """Send every task event (magi1.events) to the front end as websocket event `magi1.task`.

    Once per process (later calls do nothing); False when no server runs. `send_sync` only queues
    the message on the server's loop (thread-safe), so a publishing worker thread never waits.
    """
    global _task_events_unsubscribe
    server = _prompt_server()
    if server is None:
        return False
    if _task_events_unsubscribe is None:
        from . import events

        _task_events_unsubscribe = events.subscribe(lambda event: server.send_sync(events.TASK_EVENT, event, None))
    return True


def output_preview(paths: list[Path]) -> dict:
    """The node's "ui" dict that previews videos saved under the output (or temp) directory."""
    roots = [("output", output_directory()), ("temp", temp_directory())]
    previews = []
    for path in paths:
        resolved = Path(path).resolve()
        for folder_type, root in roots:
            try:
                relative = resolved.relative_to(root.resolve())
            except ValueError:
                continue
            subfolder = relative.parent.as_posix()
            previews.append({
                "filename": relative.name,
                "subfolder": "" if subfolder == "." else subfolder,
                "type": folder_type,
            })
            break
        else:
            log.warning("No preview for %s: ComfyUI shows only files under its output or temp "
                        "directory.", resolved)
    if not previews:
        return {}
    return {"images": previews, "animated": (True,)}


def preview_video(paths: list[Path]) -> Any:
    """A node's typed UI output (`ui.PreviewVideo`) previewing the saved videos; None when there is
    nothing ComfyUI can serve. Outside ComfyUI: the same content as a plain dict (`output_preview`)."""
    previews = output_preview(paths)
    if not previews:
        return None
    if ui is None:
        return previews
    return ui.PreviewVideo(previews["images"])


def send_event(event: str, data: dict, *, to_current_client: bool = False) -> None:
    """A custom websocket event for the pack's front-end code; broadcast unless told otherwise."""
    server = _prompt_server()
    if server is None:
        return
    sid = getattr(server, "client_id", None) if to_current_client else None
    server.send_sync(event, data, sid)


def make_extension(node_classes: list[type], on_start: Callable[[], Any] | None = None) -> Any:
    """The pack's `ComfyExtension` (what `comfy_entrypoint()` returns), listing `node_classes`.

    `on_start` runs here, at once: 0.33.0 awaits `ComfyExtension.on_load()` but 0.3.75 never calls
    it, while both call `comfy_entrypoint()`. Its failure is logged; the nodes still load.
    """
    if on_start is not None:
        try:
            on_start()
        except Exception:
            log.exception("The MAGI-1 pack's start-up step failed; the nodes still load.")

    class Magi1Extension(ComfyExtension):
        async def get_node_list(self) -> list[type]:
            return list(node_classes)

    return Magi1Extension()


def add_routes(register: Callable[[Any], None]) -> bool:
    """Call `register(routes)` with ComfyUI's route table; call it at the pack's import time.

    False (and nothing registered) when no server runs, or when `register` failed (logged).
    """
    server = _prompt_server()
    if server is None:
        if not IN_COMFYUI:
            _fallback("add_routes()")
        return False
    try:
        register(server.routes)
    except Exception:
        log.exception("Could not add the MAGI-1 HTTP routes; the nodes still work.")
        return False
    return True


def start_adoption() -> bool:
    """At ComfyUI's start: save, in the background, paid tasks whose video was never saved.

    Called once from the pack's `nodes/__init__.py`; a no-op (False) outside a ComfyUI server.
    """
    if _prompt_server() is None:
        return False
    from . import adoption

    try:
        adoption.adopt_in_background(output_directory(), private_directory())
    except Exception:
        log.exception("Could not start the MAGI-1 adoption of unsaved tasks")
        return False
    return True
