"""A WaveSpeed-compatible MAGI-1 service for tests and credit-free demos.

    python -m tools.wavespeed_emulator --port 8866      # then WAVESPEED_BASE_URL=http://127.0.0.1:8866

In-process:

    from tools.wavespeed_emulator import EmulatorServer
    with EmulatorServer(port=0, latency=0.5) as emulator:
        emulator.add_fault("result", "status", status=503, count=2)
        ...

A separately started emulator is driven over its admin API with `EmulatorAdmin(base_url)`.
Only the standard library, numpy and OpenCV are needed.
"""

from .admin import EmulatorAdmin
from .faults import FaultSpecError
from .media import UploadedMedia
from .server import EmulatorServer

__all__ = ["EmulatorAdmin", "EmulatorServer", "FaultSpecError", "UploadedMedia"]
