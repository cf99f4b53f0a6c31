"""The pack's V3 extension: its nodes, its HTTP routes, and what the examples need at start-up."""
from pathlib import Path

from ..magi1 import comfy_glue as _glue
from ..magi1 import key_routes as _key_routes
from .magi1 import NODES

EXAMPLE_FIRST_FRAME = Path(__file__).resolve().parent.parent / "examples" / "magi1_first_frame.png"

# The key setting's routes, when a ComfyUI server is running (a no-op elsewhere). At import time:
# ComfyUI copies the route table into its app once, after the packs are imported.
_glue.add_routes(_key_routes.make_register(_glue.private_directory))


class Magi1Extension(_glue.ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def comfy_entrypoint() -> Magi1Extension:
    """Called by ComfyUI when it loads the pack. The example workflows' LoadImage names
    magi1_first_frame.png: it is put into ComfyUI's input folder here if absent, so a template
    runs as loaded. Here and not in `ComfyExtension.on_load`: ComfyUI 0.3.75 never calls on_load
    (0.33.0 does), while both call this."""
    _glue.provide_input_file(EXAMPLE_FIRST_FRAME)
    return Magi1Extension()


__all__ = ["comfy_entrypoint"]
