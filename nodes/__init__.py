"""The pack's V3 extension: its nodes, its HTTP routes, and what the examples need at start-up."""
from pathlib import Path

from ..magi1 import comfy_glue as _glue
from ..magi1 import key_routes as _key_routes
from ..magi1 import panel_routes as _panel_routes
from .magi1 import NODES

EXAMPLE_FIRST_FRAME = Path(__file__).resolve().parent.parent / "examples" / "magi1_first_frame.png"

# The key setting's routes, when a ComfyUI server is running (a no-op elsewhere). At import time:
# ComfyUI copies the route table into its app once, after the packs are imported.
_glue.add_routes(_key_routes.make_register(_glue.private_directory))
_glue.add_routes(_panel_routes.make_register(_glue))  # the MAGI-1 panel's routes and task events
# Save, in the background, paid tasks whose video was never saved (a crash, a restart).
_glue.start_adoption()


async def comfy_entrypoint():
    """Called by ComfyUI when it loads the pack. The example workflows' LoadImage names
    magi1_first_frame.png: it is put into ComfyUI's input folder at start if absent, so a template
    runs as loaded on a fresh ComfyUI."""
    return _glue.make_extension(NODES, on_start=lambda: _glue.provide_input_file(EXAMPLE_FIRST_FRAME))


__all__ = ["comfy_entrypoint"]
