"""Structured JSON logs for the edge box: one object per line, no faces, names or keys.

Only the fields a log call names in `extra` are added; the loop never passes
embeddings, images, URLs or personal data, and the formatter drops any
value that is not a plain scalar, so a careless `extra` cannot dump an array.

Logs have a lifetime too (G-RET-1): written to a file, they are rotated at
midnight UTC and every rotated file older than `retention_days` is deleted,
counted by the date in its name, so a box that was off for a month does not
keep a month-old file because fewer than `retention_days` files exist. On
stderr they go to journald, whose retention deploy/journald/ sets to match.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime, timedelta
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str | int | float | bool | None):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


class DailyLogFile(TimedRotatingFileHandler):
    """One file a day (UTC); rotated files older than `retention_days` are deleted."""

    def __init__(self, path: Path, retention_days: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        super().__init__(path, when="midnight", backupCount=retention_days, utc=True,
                         encoding="utf-8")
        self.retention_days = retention_days
        self.delete_expired()

    def expired_files(self, now: datetime | None = None) -> list[Path]:
        """Rotated files whose day is more than `retention_days` before `now`."""
        limit = (now or datetime.now(UTC)).date() - timedelta(days=self.retention_days)
        base = Path(self.baseFilename)
        pattern = re.compile(re.escape(base.name) + r"\.(\d{4}-\d{2}-\d{2})")
        found = []
        for path in base.parent.iterdir():
            match = pattern.fullmatch(path.name)
            if match and datetime.strptime(match.group(1), "%Y-%m-%d").date() < limit:
                found.append(path)
        return sorted(found)

    def delete_expired(self, now: datetime | None = None) -> int:
        expired = self.expired_files(now)
        for path in expired:
            path.unlink(missing_ok=True)
        return len(expired)

    def getFilesToDelete(self) -> list[str]:  # noqa: N802 (the stdlib's name)
        by_count = set(super().getFilesToDelete())
        return sorted(by_count | {str(p) for p in self.expired_files()})


def configure_json_logging(level: int = logging.INFO, *, file: Path | None = None,
                           retention_days: int = 14) -> None:
    """JSON lines on stderr and, with `file`, in a daily file kept `retention_days` days."""
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handlers = [handler]
    if file is not None:
        daily = DailyLogFile(file, retention_days)
        daily.setFormatter(JsonFormatter())
        handlers.append(daily)
    root = logging.getLogger("mamoru")
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = False
