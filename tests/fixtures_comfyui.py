"""Fixtures for tests inside a real ComfyUI: one server and one emulator for the whole session.

    def test_something(comfyui):
        comfyui.emulator.reset()
        entry = comfyui.server.run(prompt, timeout=60)

ComfyUI keeps node outputs cached between prompts: vary an input (the seed) or call
`comfyui.server.clear_cache()` when a test needs its nodes to run again.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tools.comfyui_harness import ComfyUIServer, ComfyUIUnavailable, check_prerequisites


@dataclass
class ComfyUIWithEmulator:
    server: ComfyUIServer
    emulator: Any  # tools.wavespeed_emulator.EmulatorServer; its api_key is the one ComfyUI has


def require_comfyui() -> None:
    """Fail (never skip) when the ComfyUI tree or its venv is missing, saying how to get them."""
    try:
        check_prerequisites()
        return
    except ComfyUIUnavailable as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyUIWithEmulator]:
    """ComfyUI with this pack loaded, WAVESPEED_BASE_URL pointing at a local emulator."""
    require_comfyui()
    from fixtures_emulator import TEST_LATENCY_S, TEST_RESOLUTION, fake_api_key
    from tools.wavespeed_emulator import EmulatorServer

    emulator = EmulatorServer(port=0, latency=TEST_LATENCY_S, default_resolution=TEST_RESOLUTION,
                              api_key=fake_api_key())
    emulator.start()
    server = ComfyUIServer(
        tmp_path_factory.mktemp("comfyui"),
        env={"WAVESPEED_BASE_URL": emulator.base_url, "WAVESPEED_API_KEY": emulator.api_key},
    )
    try:
        server.start()
        yield ComfyUIWithEmulator(server, emulator)
    finally:
        server.stop()
        emulator.stop()
