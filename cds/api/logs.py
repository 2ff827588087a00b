"""One structured log format for ``cds serve``: a JSON object per line, from every process.

* Every record (the service's own, uvicorn's server and access logs) is one JSON line on stderr:
  ``ts``, ``level``, ``logger``, ``pid``, ``message`` (and ``exc`` for tracebacks). JSON escapes
  control characters, so a ``%0a`` in a URL (a service id) cannot forge a second line.
* Access log entries carry ``client``, ``method``, ``path`` (without the query string: a client
  could put anything there) and ``status``.
* ``httpx``/``httpcore`` log every request URL at info, and FHIR fallback URLs hold patient ids:
  they log at warning and above only.
* uvicorn applies this dictionary in each worker process it starts (``log_config``), so the
  per-call line appears whatever ``--workers`` is; ``logging.basicConfig`` in the parent never
  reached the workers.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

import orjson

ACCESS_LOGGER = "uvicorn.access"
QUIET = ("httpx", "httpcore")


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object (one line whatever the message holds)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": os.getpid(),
        }
        if record.name == ACCESS_LOGGER and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            entry |= {
                "message": "request",
                "client": str(client),
                "method": str(method),
                "path": str(path).split("?", 1)[0],
                "status": status,
            }
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def log_config(level: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` dictionary for the service and uvicorn (``log_config=``)."""
    upper = level.upper()
    handler = {"handlers": ["stderr"], "level": upper, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "cds.api.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "cds": handler,
            "uvicorn": handler,
            "uvicorn.error": {"level": upper},
            ACCESS_LOGGER: handler,
            **{name: {"handlers": ["stderr"], "level": "WARNING", "propagate": False} for name in QUIET},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
