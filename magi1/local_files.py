"""Which local files Magi1LoadVideo may read: videos inside ComfyUI's input, output and temp folders.

A shared workflow is a stranger's input: a path in it must not reach a private key or any other
file the server can read (FFmpeg decodes several text formats, `.asc`, `.nfo`, `.ans`, as video).
So a local source is accepted only when the path as written lies inside one of the allowed
folders (checked by text alone, before any file system call: a Windows UNC path or an automount
path outside is never even looked at) and, after resolving `..` and every symlink, it is a
regular file inside one of the allowed folders, has a video file extension and starts like a video
container (an MP4/MOV box, a Matroska/WebM header, an AVI header). FFmpeg picks its reader by
content, not by name: an HLS playlist, an ffconcat script or an SDP description named `x.mp4`
would make it read files outside the folders (with opencv-python 4.8, the floor the requirements
allow, an HLS playlist in input/ decodes any video on the disk) or open network sockets. Those folders
are already readable through ComfyUI's own `/view`, so nothing new is exposed. A missing file
and a refused one get the same error, so the answer does not tell whether a path exists.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
_QUOTES = ("\"", "'")
HEAD_BYTES = 64
# ISO base media (MP4, MOV, M4V): a box of 4 bytes of size and one of these types comes first.
_ISO_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin"})
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # Matroska and WebM; the DocType names which one


def looks_like_video_container(head: bytes) -> bool:
    """True when `head` (a file's first HEAD_BYTES bytes) opens an MP4/MOV, Matroska/WebM or AVI.

    Anything else (playlists, scripts, text, images) is refused before FFmpeg sees it. Sources:
    ISO/IEC 14496-12 §4.2 (box header), the Matroska EBML header (RFC 9559 §5), RIFF/AVI.
    """
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return True
    if head.startswith(_EBML_MAGIC):
        return b"matroska" in head or b"webm" in head
    return len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX")


def _head(path: Path) -> bytes:
    """The first HEAD_BYTES bytes; never blocks on a FIFO swapped in after the is_file() check."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        return os.read(fd, HEAD_BYTES)
    finally:
        os.close(fd)


def unquote(source: str) -> str:
    """`source` without surrounding whitespace and one pair of matching quotes ("Copy as path")."""
    text = source.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1].strip()
    return text


def allowed_roots(*extra: Path) -> list[Path]:
    """ComfyUI's input, output and temp folders (the glue's fallbacks outside it), plus `extra`,
    each as written (absolute, normalised) and resolved: ComfyUI itself serves the written form."""
    from . import comfy_glue  # late: the glue is the only module that looks at ComfyUI

    roots: list[Path] = []
    for root in (*comfy_glue.local_video_roots(), *extra):
        for form in (_lexical(Path(root)), Path(root).resolve()):
            if form not in roots:
                roots.append(form)
    return roots


def _lexical(path: Path) -> Path:
    """`path` made absolute with `..` and `.` removed by text alone: no file system call."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _refused(source: str, roots: Sequence[Path]) -> InputError:
    extensions = ", ".join(sorted(VIDEO_EXTENSIONS))
    return InputError(
        f"No video that Magi1LoadVideo may read at {source[:200]!r}. Local videos must be files "
        f"({extensions}) inside ComfyUI's input, output or temp folder: give a path relative to one "
        "of them (e.g. 'clip.mp4' in input/, or 'magi1/magi1_<task id>.mp4' in output/), or an "
        "https:// URL."
    )


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_local_video(source: str, roots: Sequence[Path]) -> Path:
    """The real path of an allowed local video; InputError (one and the same text) otherwise.

    `source` is absolute, or relative to the first root where it exists (input, then output,
    then temp). `roots` are absolute and normalised (allowed_roots() gives them so). The path is
    checked twice: as written (without touching the file system) and after resolving symlinks.
    """
    text = unquote(source)
    shown = text or source
    if not text or "\x00" in text:
        raise _refused(shown, roots)
    given = Path(text)
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [root / given for root in roots]
    for candidate in candidates:
        if not _inside(_lexical(candidate), roots):
            # Refused before any file system call: resolving or even stat()ing a path can reach
            # the network (a Windows UNC path \\host\share sends the user's NTLM hash; an
            # autofs /net/host mounts it) or wait on a device, whatever the answer turns out to be.
            continue
        try:
            real = candidate.resolve(strict=True)
            is_file = real.is_file()
        except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a bad name
            continue
        if is_file and _inside(real, roots) and real.suffix.lower() in VIDEO_EXTENSIONS \
                and candidate.suffix.lower() in VIDEO_EXTENSIONS:
            try:
                if looks_like_video_container(_head(real)):
                    return real
            except OSError:
                pass
        if is_file:
            log.info("Magi1LoadVideo refused a local path outside the allowed folders or not a video "
                     "(%d characters)", len(os.fspath(candidate)))
    raise _refused(shown, roots)
