"""`EmulatorAdmin`: drive a separately started emulator (e.g. behind a real ComfyUI) over HTTP.

The same methods as `EmulatorServer`'s admin side, over `/_emulator/...`, stdlib only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

ADMIN_TIMEOUT_S = 10.0


class EmulatorAdmin:
    def __init__(self, base_url: str, timeout: float = ADMIN_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # Loopback only: never through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(
            f"{self.base_url}/_emulator/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return json.loads(answer.read())["data"]
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise ValueError(
                f"emulator refused {method} /_emulator/{path}: HTTP {exc.code}: {detail}"
            ) from exc

    def add_fault(self, route: str, kind: str = "status", *, count: int = 1, **params: Any) -> dict[str, Any]:
        return self._call("POST", "faults", {"route": route, "kind": kind, "count": count, **params})

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def journal(self) -> list[dict[str, Any]]:
        return self._call("GET", "journal")

    def stats(self) -> dict[str, int]:
        return self._call("GET", "stats")

    def config(self) -> dict[str, Any]:
        return self._call("GET", "config")

    def configure(self, **settings: Any) -> dict[str, Any]:
        return self._call("POST", "config", settings)

    def set_latency(self, seconds: float) -> None:
        self.configure(latency=seconds)

    def tasks(self) -> list[dict[str, Any]]:
        return self._call("GET", "tasks")

    def task(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"tasks/{task_id}")

    def uploads(self) -> list[dict[str, Any]]:
        return self._call("GET", "uploads")
