"""JSON log lines with secrets scrubbed: no key, token or password reaches a log, whoever logs."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

# Provider keys (sk-..., sk-ant-...), bearer tokens, JWTs, and key=value pairs that name a secret.
__all__ = ["JsonFormatter", "scrub", "setup_logging"]

_SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=]+"),
    re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
    re.compile(
        r"(?i)((?:api[_-]?key|x-api-key|authorization|password|secret|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"
    ),
]


def scrub(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        for key in ("request_id", "user_id", "event_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        return orjson.dumps(entry).decode()


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries log request URLs and headers at DEBUG; keep them quiet.
    for noisy in (
        "httpx",
        "httpx2",
        "httpcore",
        "httpcore2",
        "openai",
        "anthropic",
        "asyncio",
        "grpc",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
