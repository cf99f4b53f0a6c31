"""Pytest fixtures for the bundled WaveSpeed emulator (loaded as a plugin by tests/conftest.py).

- `emulator`: a started `EmulatorServer` on a free loopback port, one per test (start and stop
  take milliseconds), with a short latency and 480p by default so tasks finish in about a second.
  It requires its own random key, `emulator.api_key`; `emulator.auth_headers()` sends it.
- `emulator_env`: the same emulator, with `WAVESPEED_BASE_URL` and `WAVESPEED_API_KEY` set for
  the code under test (through monkeypatch, so they are restored after the test).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tools.wavespeed_emulator import EmulatorServer

TEST_LATENCY_S = 0.5
TEST_RESOLUTION = "480p"


def fake_api_key() -> str:
    return "test-key-" + secrets.token_hex(12)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(
        port=0, latency=TEST_LATENCY_S, default_resolution=TEST_RESOLUTION, api_key=fake_api_key()
    ) as server:
        yield server


@pytest.fixture
def emulator_env(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    monkeypatch.setenv("WAVESPEED_BASE_URL", emulator.base_url)
    monkeypatch.setenv("WAVESPEED_API_KEY", emulator.api_key)
    return emulator
