"""Follow a run's `events.jsonl` as it grows, yielding only complete lines."""

from __future__ import annotations

import json
from pathlib import Path


class EventTail:
    """Reads the events appended since the last call; a line still being written waits for its newline."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0

    def read_new(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, 2)
                if size < self.offset:  # the log was replaced: read it again from the start
                    self.offset = 0
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        events = []
        for line in data[: end + 1].splitlines():
            try:
                event = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(event, dict):
                events.append(event)
        return events
