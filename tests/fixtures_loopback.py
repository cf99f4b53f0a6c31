"""Scripted loopback servers (tests/loopback_http.py) for the security tests."""
from __future__ import annotations

import pytest

from loopback_http import LoopbackHTTP


@pytest.fixture
def api():
    """A scripted stand-in for the WaveSpeed API: answers what a test routes, 404 otherwise."""
    with LoopbackHTTP() as server:
        yield server


@pytest.fixture
def elsewhere():
    """A second origin (another port): a host the key must never reach."""
    with LoopbackHTTP() as server:
        yield server
