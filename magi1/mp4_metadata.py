"""Where a saved clip came from, written into the MP4 itself: prompt, seed, task id, model, service.

The tags are container metadata added by remuxing with PyAV (stream copy: every packet is copied
byte for byte, nothing is decoded or re-encoded), the way ComfyUI's own `VideoFromFile.save_to`
keeps metadata: `movflags=use_metadata_tags`, so the keys are free-form `mdta` keys that ffprobe,
PyAV and ExifTool read. ComfyUI's SaveVideo copies a source file's metadata over when it remuxes,
so the tags also survive Magi1Poll → SaveVideo.

| key | value |
| --- | --- |
| `magi1_task_id` | the WaveSpeed task id |
| `magi1_prompt` | the prompt as sent |
| `magi1_seed` | the seed as sent (-1: the service chose) |
| `magi1_model` | `wavespeed-ai/magi-1-24b` |
| `magi1_service` | the base URL the task was submitted to (never a key: none is ever in it) |
| `title` | the prompt (what file browsers show) |
| `comment` | one sentence with all of the above |

Keys are prefixed: ComfyUI reads a video's `prompt` and `workflow` keys as its own graph when a
file is dropped on the canvas. Tagging is best effort: when PyAV is missing or the remux fails,
the original file stays as it was and the reason is logged (a paid clip is never lost to a tag).
"""
from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "magi1_"
MODEL = "wavespeed-ai/magi-1-24b"  # the model path the client submits to (client.MODEL_PATH)
MAX_VALUE_CHARS = 4000  # a prompt is far shorter; a tag is no place for megabytes
WRITE_OPTIONS = {"movflags": "use_metadata_tags"}


def task_tags(*, task_id: str | None, request: Mapping[str, Any] | None, base_url: str | None,
              model: str = MODEL) -> dict[str, str]:
    """The tags for one task's clip: keys above, values as text (empty ones left out)."""
    request = request or {}
    prompt = str(request.get("prompt") or "")
    seed = request.get("seed")
    tags = {
        f"{PREFIX}task_id": task_id or "",
        f"{PREFIX}prompt": prompt,
        f"{PREFIX}seed": "" if seed is None else str(seed),
        f"{PREFIX}model": model,
        f"{PREFIX}service": base_url or "",
    }
    if prompt:
        tags["title"] = prompt
    about = f"MAGI-1 24B ({model})"
    if task_id:
        about += f" task {task_id}"
    if base_url:
        about += f" on {base_url}"
    if seed is not None:
        about += f", seed {seed}"
    tags["comment"] = about + (f": {prompt}" if prompt else "")
    return {key: value[:MAX_VALUE_CHARS] for key, value in tags.items() if value}


def read_tags(path: Path) -> dict[str, str]:
    """The container metadata of an MP4 (all keys, as PyAV reports them). Raises what PyAV raises."""
    import av

    with av.open(str(path)) as container:
        return dict(container.metadata)


def write_tags(path: Path, tags: Mapping[str, str]) -> bool:
    """Add `tags` to the MP4 at `path` in place, without re-encoding. True when the file was rewritten.

    Keeps the file's other metadata; does nothing when every tag is already there with the same
    value. The new file is written beside the old one and renamed over it, so a failure (logged,
    False) leaves the original untouched. Shapes: video/audio/subtitle streams are copied as they
    are; packet bytes, pts and dts are unchanged.
    """
    path = Path(path)
    try:
        import av
    except ImportError as exc:
        log.warning("not tagging %s: PyAV is missing (%s); the clip is saved without its metadata", path.name, exc)
        return False
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tagging")
    try:
        with av.open(str(path)) as source:
            existing = dict(source.metadata)
            if all(existing.get(key) == value for key, value in tags.items()):
                return False
            copied = [s for s in source.streams if s.type in ("video", "audio", "subtitle")]
            if not copied:
                log.warning("not tagging %s: it has no video stream", path.name)
                return False
            with av.open(str(tmp), mode="w", format="mp4", options=dict(WRITE_OPTIONS)) as target:
                for key, value in {**existing, **tags}.items():
                    target.metadata[key] = value
                mapping = {s.index: target.add_stream_from_template(template=s, opaque=True) for s in copied}
                for packet in source.demux(copied):
                    if packet.dts is None:  # the demuxer's end-of-stream marker, no data
                        continue
                    packet.stream = mapping[packet.stream.index]
                    target.mux(packet)
        os.replace(tmp, path)
        return True
    except Exception as exc:  # noqa: BLE001 - any PyAV/FFmpeg failure: keep the clip as it was
        log.warning("could not add the MAGI-1 metadata to %s (%s: %s); the clip is kept as downloaded",
                    path.name, type(exc).__name__, exc)
        return False
    finally:
        tmp.unlink(missing_ok=True)


def tag_saved_video(path: Path, record: Any | None) -> bool:
    """Tag a clip the pipeline just saved from its ledger record (a `ledger.TaskRecord`). None (a
    URL that belongs to no known task, maybe not a MAGI-1 clip at all) leaves the file alone."""
    if record is None:
        return False
    return write_tags(path, task_tags(task_id=record.task_id, request=record.request, base_url=record.base_url))
