from ..magi1 import comfy_glue as _glue
from ..magi1 import key_routes as _key_routes
from .magi1 import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

# The key setting's routes, when a ComfyUI server is running (a no-op elsewhere).
_glue.add_routes(_key_routes.make_register(_glue.private_directory))
# Save, in the background, paid tasks whose video was never saved (a crash, a restart).
_glue.start_adoption()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
