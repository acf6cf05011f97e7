"""gunicorn's own logs (server messages and the access log) as JSON lines on stdout.

gunicorn logs outside Django's LOGGING configuration, so without this its lines would be
plain text on stderr. The access line carries the response's `X-Request-ID`, so it joins the
application's lines of the same request; it logs the path without the query string (which can
carry tokens or addresses) and no user agent or client address.

Used as `logger_class` in deploy/gunicorn.conf.py; imports nothing of Django.
"""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from typing import Any

from gunicorn.config import Config
from gunicorn.glogging import Logger

from comcenter.lib.logging import JsonFormatter, RedactFilter, RequestIdFilter


class GunicornJsonLogger(Logger):
    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not getattr(handler, "_gunicorn", False):
                    continue
                if isinstance(handler, logging.StreamHandler) and not isinstance(
                    handler, logging.FileHandler
                ):
                    handler.setStream(sys.stdout)
                handler.setFormatter(JsonFormatter())
                handler.addFilter(RequestIdFilter())
                handler.addFilter(RedactFilter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        headers = resp.headers.items() if hasattr(resp.headers, "items") else resp.headers
        request_id = next((v for k, v in headers if k.lower() == "x-request-id"), "")
        method = environ.get("REQUEST_METHOD", "-")
        path = environ.get("PATH_INFO", "-")
        try:
            self.access_log.info(
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "method": method,
                    "path": path,
                    "status": int(status),
                    "duration_ms": round(request_time.total_seconds() * 1000, 2),
                    "bytes": getattr(resp, "sent", None),
                    "request_id": request_id,
                },
            )
        except Exception:  # a log line must never break the response path
            self.error("access log failed")
