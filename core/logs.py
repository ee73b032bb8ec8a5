"""JSON logs with the fields Cloud Logging understands.

One line per record: ``severity``, ``message``, ``time``, ``logger`` and whatever context
the caller passed in ``extra`` (event_id, session_id, user_id, task_id...). A trace id
passed as ``trace`` becomes ``logging.googleapis.com/trace``. Secrets are never passed.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "INFO": "INFO", "DEBUG": "DEBUG"}


class JsonFormatter(logging.Formatter):
    def __init__(self, project: str | None = None):
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                entry[key] = value
        if entry.get("trace") and self.project:
            entry["logging.googleapis.com/trace"] = f"projects/{self.project}/traces/{entry.pop('trace')}"
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", project: str | None = None) -> None:
    # The real stderr: Celery replaces sys.stderr in its pool children with a logging proxy.
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(JsonFormatter(project))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "google", "grpc", "stripe"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
