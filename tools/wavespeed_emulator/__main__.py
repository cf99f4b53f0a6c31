"""`python -m tools.wavespeed_emulator --port PORT`: serve until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .server import DEFAULT_LATENCY_S, EmulatorServer
from .videogen import RESOLUTIONS


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.wavespeed_emulator",
        description="A WaveSpeed-compatible MAGI-1 API on loopback. The key it accepts is the "
        "WAVESPEED_API_KEY of its own environment, or any non-empty bearer key when that is unset.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--latency", type=float, default=DEFAULT_LATENCY_S, help="seconds a task takes (default: %(default)s)"
    )
    parser.add_argument(
        "--default-resolution",
        choices=RESOLUTIONS,
        default="720p",
        help="when a request names none (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="(default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    # Explicit, so Ctrl-C works even when started from a script that ignores SIGINT (`cmd &`).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        emulator = EmulatorServer(
            args.host, args.port, latency=args.latency, default_resolution=args.default_resolution
        )
        emulator.start()
    except (OSError, ValueError) as exc:
        logging.getLogger(__name__).error("cannot start the emulator: %s", exc)
        return 1
    try:
        stop.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
