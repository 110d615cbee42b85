"""Event files: append-only JSON lines that one process writes and others read while it runs.

Why: a background job's progress must be readable by the app without scraping console text
(Lightning/Accelerate-logger style). A writer appends one JSON object per line with a single
write, so a reader sees whole lines (or a partial last one, which it skips). Training's events
are listed in emotion_core/training/progress.py; jobs.runner adds its step events.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_EVENTS = "EMOTION_EVENTS"  # the events file a process appends to (set by background jobs)


@dataclass(frozen=True)
class EventLog:
    """Appends events to a JSON-lines file; a log without a path discards them."""

    path: Path | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # added to every event

    @classmethod
    def from_env(cls, path: str | Path | None = None) -> EventLog:
        """The log at `path`, else at $EMOTION_EVENTS, else one that discards events."""
        chosen = path or os.environ.get(ENV_EVENTS)
        return cls(Path(chosen) if chosen else None)

    def bind(self, **fields: Any) -> EventLog:
        """A log that adds `fields` to every event (e.g. model=..., index=..., of=...)."""
        return EventLog(self.path, {**self.fields, **fields})

    def emit(self, event: str, **data: Any) -> None:
        if self.path is None:
            return
        record = _clean({"event": event, "time": round(time.time(), 3), **self.fields, **data})
        line = json.dumps(record, default=_plain, allow_nan=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:  # one write() of one whole line: concurrent readers never see a torn line in the middle
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in a JSON-lines file ([] when it does not exist yet)."""
    return list(iter_events(path))


def iter_events(path: Path) -> Iterator[dict[str, Any]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if isinstance(record, dict) and "event" in record:
            yield record


def _clean(obj: Any) -> Any:
    """NaN and infinities become null (strict JSON); containers are cleaned recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            return _clean(obj.item())
        except (TypeError, ValueError):
            return obj
    return obj


def _plain(obj: Any) -> str:
    return str(obj)  # paths and anything else JSON has no type for
