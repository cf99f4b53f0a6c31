"""Uploaded files: upload tickets waiting for their PUT, and the stored bytes they become.

Bounded on every axis: one file at most `max_file_bytes`, the store at most `max_total_bytes`
(oldest files evicted first), pending tickets at most `MAX_PENDING_TICKETS` (oldest dropped).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_PENDING_TICKETS = 1000
TICKET_LIFETIME_S = 3600.0


@dataclass(frozen=True)
class UploadTicket:
    token: str
    filename: str
    size: int
    content_type: str
    expires: float


@dataclass(frozen=True)
class UploadedMedia:
    token: str
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def describe(self) -> dict[str, object]:
        return {
            "token": self.token,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }


class MediaStore:
    def __init__(self, max_file_bytes: int, max_total_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self._lock = threading.Lock()
        self._tickets: OrderedDict[str, UploadTicket] = OrderedDict()
        self._media: OrderedDict[str, UploadedMedia] = OrderedDict()
        self._total = 0

    def open_ticket(self, filename: str, size: int, content_type: str) -> UploadTicket:
        ticket = UploadTicket(
            token=secrets.token_hex(16),
            filename=filename,
            size=size,
            content_type=content_type,
            expires=time.monotonic() + TICKET_LIFETIME_S,
        )
        with self._lock:
            self._tickets[ticket.token] = ticket
            while len(self._tickets) > MAX_PENDING_TICKETS:
                self._tickets.popitem(last=False)
        return ticket

    def ticket(self, token: str) -> UploadTicket | None:
        with self._lock:
            ticket = self._tickets.get(token)
            if ticket is not None and ticket.expires < time.monotonic():
                del self._tickets[token]
                return None
            return ticket

    def redeem(self, token: str, data: bytes) -> UploadedMedia:
        """Store the PUT bytes of a ticket (the caller checked the ticket's size and type)."""
        with self._lock:
            ticket = self._tickets.pop(token)
        return self.store(data, ticket.filename, ticket.content_type, token=token)

    def store(self, data: bytes, filename: str, content_type: str, token: str | None = None) -> UploadedMedia:
        media = UploadedMedia(token or secrets.token_hex(16), filename, content_type, bytes(data))
        with self._lock:
            old = self._media.pop(media.token, None)
            if old is not None:
                self._total -= old.size
            self._media[media.token] = media
            self._total += media.size
            while self._total > self.max_total_bytes and len(self._media) > 1:
                _, evicted = self._media.popitem(last=False)
                self._total -= evicted.size
        return media

    def get(self, token: str) -> UploadedMedia | None:
        with self._lock:
            return self._media.get(token)

    def snapshot(self) -> dict[str, UploadedMedia]:
        with self._lock:
            return dict(self._media)

    def clear(self) -> None:
        with self._lock:
            self._tickets.clear()
            self._media.clear()
            self._total = 0
