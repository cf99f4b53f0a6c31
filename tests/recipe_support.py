"""Helpers for tests of the recipe (magi1.pipeline) without ComfyUI: a Cancel button and a Context."""
from __future__ import annotations

import asyncio
import threading

from magi1 import pipeline


class Cancelled(Exception):
    """What the stand-in Cancel button raises (ComfyUI's is InterruptProcessingException)."""


class CancelButton:
    """Stands in for ComfyUI's interrupt flag: pressed from another thread, checked by the pack.

    Like ComfyUI's `throw_exception_if_processing_interrupted`, a check that raises clears it.
    """

    def __init__(self):
        self.pressed = threading.Event()

    def press_after(self, seconds):
        threading.Timer(seconds, self.pressed.set).start()

    def check(self):
        if self.pressed.is_set():
            self.pressed.clear()
            raise Cancelled()


def make_ctx(tmp_path, run_id=None) -> pipeline.Context:
    """A Context on `tmp_path`'s output/ and private/ folders, with `.cancel`, its Cancel button."""
    button = CancelButton()
    context = pipeline.Context(
        output_dir=tmp_path / "output", private_dir=tmp_path / "private", throw_if_interrupted=button.check,
        run_id=run_id,
    )
    context.cancel = button
    return context


def run(coro):
    return asyncio.run(coro)


def submits(emulator):
    """The submit POSTs the emulator received, from its journal."""
    return [e for e in emulator.journal() if e["route"] == "submit"]
