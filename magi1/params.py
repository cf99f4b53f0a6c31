"""Node inputs → the MAGI-1 request, checked before anything is uploaded or billed."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .task_ids import TASK_ID_MAX_CHARS, is_task_id, shown

SEED_MIN, SEED_MAX = -1, 2147483647
NUM_FRAMES_MIN, NUM_FRAMES_MAX = 96, 192
FPS_MIN, FPS_MAX = 5, 30
RESOLUTIONS = ("default", "480p", "720p")
ASPECT_RATIOS = ("default", "auto", "16:9", "9:16", "1:1")
MAX_PROMPT_CHARS = 10_000

# What a default MAGI-1 clip is, for estimates and the README.
DEFAULT_NUM_FRAMES = 96
DEFAULT_FPS = 24


@dataclass(frozen=True)
class Magi1Request:
    """One task's parameters, without the first frame (uploaded separately, per task)."""

    prompt: str
    seed: int = -1
    resolution: str = "default"
    aspect_ratio: str = "default"
    num_frames: int = 0
    frames_per_second: int = 0
    enable_safety_checker: bool = True

    def payload(self, image_url: str | None = None) -> dict[str, Any]:
        """The JSON body. Options left at `default`/0 are not sent, so the service decides."""
        body: dict[str, Any] = {"prompt": self.prompt, "seed": self.seed}
        if image_url:
            body["image"] = image_url
        if self.resolution != "default":
            body["resolution"] = self.resolution
        if self.aspect_ratio != "default":
            body["aspect_ratio"] = self.aspect_ratio
        if self.num_frames:
            body["num_frames"] = self.num_frames
        if self.frames_per_second:
            body["frames_per_second"] = self.frames_per_second
        body["enable_safety_checker"] = bool(self.enable_safety_checker)
        return body


# Letters that draw nothing (Unicode calls them letters, fonts leave them blank): Hangul fillers,
# the braille blank. Categories C* (controls, format: zero-width, bidi marks, BOM; unassigned,
# private use, surrogates) and Z* (spaces, line and paragraph separators) are invisible as a class.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def visible_characters(text: str) -> str:
    """`text` without control, format (zero-width, bidi), separator and blank-letter characters;
    empty too when only marks (category M: accents, the grapheme joiner, variation selectors)
    remain, since a mark draws nothing without a letter or symbol to sit on."""
    kept = "".join(
        c for c in text if unicodedata.category(c)[0] not in "CZ" and c not in _BLANK_LETTERS
    )
    return kept if any(unicodedata.category(c)[0] != "M" for c in kept) else ""


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not value.is_integer()  # also NaN and the infinities
    ) or int(value) != value:
        raise InputError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def build_request(
    prompt: Any,
    seed: Any = -1,
    resolution: str = "default",
    aspect_ratio: str = "default",
    num_frames: Any = 0,
    frames_per_second: Any = 0,
    enable_safety_checker: bool = True,
) -> Magi1Request:
    """Validate every input the way the service would, and say how to fix what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("The prompt is empty. Describe the video you want in Magi1Submit's prompt.")
    if not visible_characters(prompt):
        raise InputError(
            "The prompt has only invisible or control characters (e.g. NUL, zero-width spaces, "
            "direction marks). Describe the video you want in Magi1Submit's prompt."
        )
    prompt = prompt.strip()
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"The prompt has {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS}.")
    seed = _int("seed", seed)
    if not SEED_MIN <= seed <= SEED_MAX:
        raise InputError(f"seed must be -1 (random) or 0…{SEED_MAX}, got {seed}.")
    if resolution not in RESOLUTIONS:
        raise InputError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}.")
    if aspect_ratio not in ASPECT_RATIOS:
        raise InputError(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}, got {aspect_ratio!r}.")
    num_frames = _int("num_frames", num_frames)
    if num_frames and not NUM_FRAMES_MIN <= num_frames <= NUM_FRAMES_MAX:
        raise InputError(
            f"num_frames must be 0 (the service's default, {DEFAULT_NUM_FRAMES}) or "
            f"{NUM_FRAMES_MIN}…{NUM_FRAMES_MAX}, got {num_frames}."
        )
    frames_per_second = _int("frames_per_second", frames_per_second)
    if frames_per_second and not FPS_MIN <= frames_per_second <= FPS_MAX:
        raise InputError(
            f"frames_per_second must be 0 (the service's default, {DEFAULT_FPS}) or "
            f"{FPS_MIN}…{FPS_MAX}, got {frames_per_second}."
        )
    return Magi1Request(
        prompt=prompt,
        seed=seed,
        resolution=resolution,
        aspect_ratio=aspect_ratio,
        num_frames=num_frames,
        frames_per_second=frames_per_second,
        enable_safety_checker=bool(enable_safety_checker),
    )


def parse_task_ids(text: str | None) -> list[str]:
    """Task ids from a STRING input: one per line (commas and spaces also separate)."""
    if not text:
        return []
    ids = [part.strip() for line in text.splitlines() for part in line.replace(",", " ").split()]
    for task_id in ids:
        if not is_task_id(task_id):
            raise InputError(
                f"{shown(task_id)} does not look like a WaveSpeed task id (letters, digits, '-' and "
                f"'_', at most {TASK_ID_MAX_CHARS}). Copy the id from Magi1Submit's task_id output."
            )
    return ids


def parse_video_sources(text: str | None) -> list[str]:
    """URLs or paths, one per line."""
    if not text:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]
