"""Fixtures for tests inside a real ComfyUI: one server and one emulator per ComfyUI version.

    def test_something(comfyui):
        comfyui.emulator.reset()
        entry = comfyui.server.run(prompt, timeout=60)

`comfyui` is parametrized over every version in tools.comfyui_harness.comfyui_versions()
(0.3.75 and 0.33.0): each test using it runs once per version, ids `[comfyui_0_3_75]` and
`[comfyui_0_33_0]`; `comfyui.version` says which. A version that is not set up fails, never skips.

ComfyUI keeps node outputs cached between prompts: vary an input (the seed) or call
`comfyui.server.clear_cache()` when a test needs its nodes to run again.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tools.comfyui_harness import (
    ComfyUIServer,
    ComfyUIUnavailable,
    ComfyUIVersion,
    check_prerequisites,
    comfyui_versions,
)

VERSIONS = comfyui_versions()
VERSION_IDS = [version.test_id for version in VERSIONS]


@dataclass
class ComfyUIWithEmulator:
    server: ComfyUIServer
    emulator: Any  # tools.wavespeed_emulator.EmulatorServer; its api_key is the one ComfyUI has

    @property
    def version(self) -> str:
        """"0.3.75" or "0.33.0"."""
        return self.server.version


def require_comfyui(version: ComfyUIVersion | None = None) -> None:
    """Fail (never skip) when a ComfyUI tree or its venv is missing, saying how to get them."""
    version = version or VERSIONS[0]
    try:
        if version.comfy_dir is None or version.python is None:
            raise ComfyUIUnavailable(
                f"ComfyUI {version.version} is not set up: {version.tree_variable} / "
                f"{version.python_variable} are unset. Run the tests through scripts/test.sh, or "
                "`source scripts/env.sh --comfyui-033` first.")
        check_prerequisites(version.comfy_dir, version.python)
        return
    except ComfyUIUnavailable as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session", params=VERSIONS, ids=VERSION_IDS)
def comfyui_version(request: pytest.FixtureRequest) -> ComfyUIVersion:
    """Each ComfyUI version in turn (session-scoped: one server per version for the whole run)."""
    require_comfyui(request.param)
    return request.param


@pytest.fixture(scope="session")
def comfyui(comfyui_version: ComfyUIVersion,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyUIWithEmulator]:
    """ComfyUI (each version in turn) with this pack loaded, WAVESPEED_BASE_URL at a local emulator."""
    from fixtures_emulator import TEST_LATENCY_S, TEST_RESOLUTION, fake_api_key
    from tools.wavespeed_emulator import EmulatorServer

    emulator = EmulatorServer(port=0, latency=TEST_LATENCY_S, default_resolution=TEST_RESOLUTION,
                              api_key=fake_api_key())
    emulator.start()
    server = ComfyUIServer(
        tmp_path_factory.mktemp(comfyui_version.test_id),
        version=comfyui_version,
        env={"WAVESPEED_BASE_URL": emulator.base_url, "WAVESPEED_API_KEY": emulator.api_key},
    )
    try:
        server.start()
        yield ComfyUIWithEmulator(server, emulator)
    finally:
        server.stop()
        emulator.stop()
