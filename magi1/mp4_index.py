"""What an MP4's own index says, read from its boxes: is the file whole, how many frames it holds.

An MP4 (ISO base media file, ISO/IEC 14496-12; MOV is the same structure) is a sequence of
boxes: 4 bytes of size, 4 of type, then the content. Its index is the `moov` box: per track the
sample sizes (`stsz`), where the chunks start (`stco`/`co64`) and how samples group into chunks
(`stsc`). A fragmented MP4 carries a `moov` without samples and then `moof` boxes whose `trun`
lists each fragment's samples. A file cut short (a broken download, a copy still being written)
either lacks the `moov` (index at the end), has a last box that runs past the end of the file,
or has an index whose samples lie beyond the end: `problem()` names which. It reads only box
headers and the index (never the media data), so it costs milliseconds on any size of file.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Box types that may start an ISO base media file.
FILE_START_TYPES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"styp", b"moof"}
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"mvex", b"moof", b"traf"}
# An index larger than this is not a video this pack makes or loads (a 2 h 60 fps clip is ~5 MB).
_MAX_INDEX_BYTES = 256 << 20


@dataclass
class Track:
    track_id: int = 0
    handler: str = ""
    """'vide', 'soun', ... (`hdlr`)."""
    timescale: int = 0
    duration: int = 0
    """In `timescale` units (`mdhd`)."""
    samples: int = 0
    """Samples in the index (`stsz`) plus those of every fragment (`trun`)."""
    data_end: int = 0
    """The byte just past the last sample's data (non-fragmented tracks; 0 when unknown)."""
    edits_drop_samples: bool = False
    """An edit list (`elst`) that may present fewer samples than the index holds."""
    rotation: float = 0.0
    """Degrees counter-clockwise the display matrix (`tkhd`) turns the picture, as FFmpeg's
    `av_display_rotation_get` reads it: `-atan2(b, a)` of the matrix `[a b u; c d v; x y w]`."""


@dataclass
class Mp4Index:
    file_size: int
    fragmented: bool = False
    tracks: list[Track] = field(default_factory=list)
    problem: str | None = None
    """Why the file is incomplete, or None when its index and data are all there."""

    def video_track(self) -> Track | None:
        return next((t for t in self.tracks if t.handler == "vide"), None)


def starts_like_mp4(head: bytes) -> bool:
    """ISO base media files start with a box: 4 bytes of size, then a known 4-letter type."""
    return len(head) >= 8 and head[4:8] in FILE_START_TYPES


def read(path: str | Path) -> Mp4Index | None:
    """The file's index, or None if it does not start like an MP4/MOV at all."""
    path = Path(path)
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        if not starts_like_mp4(fh.read(12)):
            return None
        index = Mp4Index(file_size=size)
        moov_seen = False
        fragments: dict[int, int] = {}
        position = 0
        while position + 8 <= size:
            fh.seek(position)
            box_type, header, length = _box_header(fh, position, size)
            end = position + length
            if end > size:
                index.problem = (f"its {box_type.decode('latin-1')} box runs to byte {end:,} but the file "
                                 f"has {size:,} bytes: the file is cut short")
                break
            if box_type in (b"moov", b"moof"):
                if length - header > _MAX_INDEX_BYTES:
                    index.problem = f"its {box_type.decode()} box is {length:,} bytes, too large for an index"
                    break
                fh.seek(position + header)
                body = fh.read(length - header)
                try:
                    if box_type == b"moov":
                        moov_seen = True
                        _read_moov(body, index)
                    else:
                        index.fragmented = True
                        _read_moof(body, fragments)
                except (struct.error, IndexError, ValueError):
                    index.problem = f"its {box_type.decode()} box (the index) is damaged"
                    break
            position = end
        if position < size and index.problem is None and position + 8 > size:
            index.problem = f"it ends inside a box header ({size - position} stray bytes at the end)"
    if not moov_seen and index.problem is None:
        index.problem = "it has no index (moov box): the file is cut short or still being written"
    for track in index.tracks:
        track.samples += fragments.get(track.track_id, 0)
        if index.problem is None and track.data_end > size:
            index.problem = (f"its index puts {track.handler or 'track'} samples up to byte {track.data_end:,} "
                             f"but the file has {size:,} bytes: the file is cut short")
    return index


def problem(path: str | Path) -> str | None:
    """Why the MP4 at `path` is incomplete, or None when it is whole. Not an MP4 → a reason too."""
    try:
        index = read(path)
    except OSError as error:
        return f"it cannot be read ({error.strerror or error})"
    if index is None:
        return "it does not start like an MP4 (no MP4 box at its start)"
    return index.problem


# --- boxes ------------------------------------------------------------------------------------------------
def _box_header(fh, position: int, size: int) -> tuple[bytes, int, int]:
    raw = fh.read(16)
    length, box_type = struct.unpack(">I4s", raw[:8])
    header = 8
    if length == 1 and len(raw) >= 16:
        length = struct.unpack(">Q", raw[8:16])[0]
        header = 16
    elif length == 0:
        length = size - position  # "to the end of the file"
    return box_type, header, max(length, header)


def _children(body: bytes, start: int = 0):
    position = start
    while position + 8 <= len(body):
        length, box_type = struct.unpack_from(">I4s", body, position)
        header = 8
        if length == 1:
            length = struct.unpack_from(">Q", body, position + 8)[0]
            header = 16
        elif length == 0:
            length = len(body) - position
        if length < header or position + length > len(body):
            return
        yield box_type, body[position + header: position + length]
        position += length


def _read_moov(body: bytes, index: Mp4Index) -> None:
    movie_timescale = 0
    for box_type, content in _children(body):
        if box_type == b"mvhd":
            movie_timescale = struct.unpack_from(">I", content, 12 if content[0] == 0 else 20)[0]
        elif box_type == b"mvex":
            index.fragmented = True
        elif box_type == b"trak":
            index.tracks.append(_read_trak(content, movie_timescale))


def _read_trak(body: bytes, movie_timescale: int) -> Track:
    track = Track()
    edits: list[tuple[int, int]] = []  # (segment duration in movie units, media time)
    boxes: dict[bytes, bytes] = {}

    def walk(content: bytes) -> None:
        for box_type, inner in _children(content):
            if box_type in _CONTAINERS:
                walk(inner)
            else:
                boxes.setdefault(box_type, inner)

    walk(body)
    if (tkhd := boxes.get(b"tkhd")) is not None:
        track.track_id = struct.unpack_from(">I", tkhd, 12 if tkhd[0] == 0 else 20)[0]
        matrix_at = 40 if tkhd[0] == 0 else 52
        if len(tkhd) >= matrix_at + 36:
            a, b = struct.unpack_from(">ii", tkhd, matrix_at)
            track.rotation = -math.degrees(math.atan2(b, a)) if (a or b) else 0.0
    if (hdlr := boxes.get(b"hdlr")) is not None and len(hdlr) >= 12:
        track.handler = hdlr[8:12].decode("latin-1")
    if (mdhd := boxes.get(b"mdhd")) is not None:
        if mdhd[0] == 0:
            track.timescale, track.duration = struct.unpack_from(">II", mdhd, 12)
        else:
            track.timescale, track.duration = struct.unpack_from(">IQ", mdhd, 20)
    if (elst := boxes.get(b"elst")) is not None:
        version, count = elst[0], struct.unpack_from(">I", elst, 4)[0]
        step, fmt = (12, ">IiI") if version == 0 else (20, ">QqI")
        for i in range(min(count, (len(elst) - 8) // step)):
            duration, media_time, _rate = struct.unpack_from(fmt, elst, 8 + i * step)
            edits.append((duration, media_time))
    sizes = _sample_sizes(boxes.get(b"stsz"))
    track.samples = len(sizes)
    offsets = _chunk_offsets(boxes.get(b"stco"), boxes.get(b"co64"))
    if len(sizes) and len(offsets):
        track.data_end = _data_end(sizes, offsets, boxes.get(b"stsc"))
    track.edits_drop_samples = _edits_drop_samples(edits, movie_timescale, track)
    return track


def _sample_sizes(stsz: bytes | None) -> np.ndarray:
    if stsz is None or len(stsz) < 12:
        return np.zeros(0, np.int64)
    constant, count = struct.unpack_from(">II", stsz, 4)
    if constant:
        return np.full(count, constant, np.int64)
    return np.frombuffer(stsz, ">u4", count=min(count, (len(stsz) - 12) // 4), offset=12).astype(np.int64)


def _chunk_offsets(stco: bytes | None, co64: bytes | None) -> np.ndarray:
    if stco is not None and len(stco) >= 8:
        count = struct.unpack_from(">I", stco, 4)[0]
        return np.frombuffer(stco, ">u4", count=min(count, (len(stco) - 8) // 4), offset=8).astype(np.int64)
    if co64 is not None and len(co64) >= 8:
        count = struct.unpack_from(">I", co64, 4)[0]
        return np.frombuffer(co64, ">u8", count=min(count, (len(co64) - 8) // 8), offset=8).astype(np.int64)
    return np.zeros(0, np.int64)


def _data_end(sizes: np.ndarray, offsets: np.ndarray, stsc: bytes | None) -> int:
    """The byte after the last sample: each chunk's offset plus the sizes of its samples."""
    chunks = len(offsets)
    per_chunk = np.ones(chunks, np.int64)
    if stsc is not None and len(stsc) >= 8:
        count = struct.unpack_from(">I", stsc, 4)[0]
        table = np.frombuffer(stsc, ">u4", count=min(count, (len(stsc) - 8) // 4 // 3) * 3, offset=8)
        table = table.reshape(-1, 3).astype(np.int64)
        for row, (first, samples, _description) in enumerate(table):
            last = table[row + 1][0] - 1 if row + 1 < len(table) else chunks
            per_chunk[max(first - 1, 0):max(last, 0)] = samples
    starts = np.concatenate([[0], np.cumsum(per_chunk)[:-1]])
    valid = starts < len(sizes)
    ends_in_samples = np.minimum(starts + per_chunk, len(sizes))
    cumulative = np.concatenate([[0], np.cumsum(sizes)])
    lengths = cumulative[ends_in_samples[valid]] - cumulative[starts[valid]]
    return int((offsets[valid] + lengths).max()) if valid.any() else 0


def _edits_drop_samples(edits: list[tuple[int, int]], movie_timescale: int, track: Track) -> bool:
    """True when the edit list may hide samples: more than one real edit, or one shorter than the media.

    The common edit (FFmpeg, x264 with B-frames) starts at the first frame's composition delay
    and covers the rest of the media: nothing is dropped.
    """
    real = [(duration, media_time) for duration, media_time in edits if media_time != -1]
    if not real:
        return False
    if len(real) > 1 or not (movie_timescale and track.timescale and track.duration):
        return True
    duration, media_time = real[0]
    covered = duration * track.timescale / movie_timescale
    # a frame or two of slack: durations are rounded to the movie's timescale
    slack = 2 * track.duration / max(track.samples, 1)
    return media_time + covered + slack < track.duration


def _read_moof(body: bytes, fragments: dict[int, int]) -> None:
    for box_type, traf in _children(body):
        if box_type != b"traf":
            continue
        track_id = 0
        for inner_type, inner in _children(traf):
            if inner_type == b"tfhd" and len(inner) >= 8:
                track_id = struct.unpack_from(">I", inner, 4)[0]
            elif inner_type == b"trun" and len(inner) >= 8:
                fragments[track_id] = fragments.get(track_id, 0) + struct.unpack_from(">I", inner, 4)[0]
