"""HTTP routes for the front end's key setting.

The key is written to a 0600 file in a private folder of ComfyUI's user directory (never in
the workflow, browser storage or ComfyUI's settings file). No route ever answers with the key:
only whether one is set, where it comes from, and its last 4 characters.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from collections.abc import Callable

from . import config

log = logging.getLogger(__name__)

ROUTE = "/magi1/api_key"
MAX_KEY_CHARS = 512


def key_status(private_dir: Path) -> dict[str, Any]:
    key = config.find_api_key(private_dir)
    file_key = config.read_key_file(private_dir)
    return {
        "set": key is not None,
        "source": key.source if key else None,
        "last4": key.last4 if key else "",
        "stored": file_key is not None,
        "environment_overrides": key is not None and key.source == "environment" and file_key is not None,
    }


def make_register(private_dir: Callable[[], Path]) -> Callable[[Any], None]:
    """A function that adds the routes to ComfyUI's route table (given by the glue)."""

    def register(routes: Any) -> None:
        from aiohttp import web

        @routes.get(ROUTE)
        async def get_key_status(request):
            return web.json_response(key_status(private_dir()))

        @routes.post(ROUTE)
        async def store_key(request):
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "send JSON {\"key\": \"...\"}"}, status=400)
            key = body.get("key") if isinstance(body, dict) else None
            if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_CHARS or any(
                c.isspace() for c in key.strip()
            ):
                return web.json_response({"error": "the key must be one non-empty word"}, status=400)
            config.write_key_file(private_dir(), key)
            log.info("stored a WaveSpeed API key from the settings (ending …%s)", config.ApiKey(key.strip(), "").last4)
            return web.json_response(key_status(private_dir()))

        @routes.delete(ROUTE)
        async def delete_key(request):
            config.delete_key_file(private_dir())
            log.info("deleted the stored WaveSpeed API key")
            return web.json_response(key_status(private_dir()))

    return register
