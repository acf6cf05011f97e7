"""Log records exactly as our code emitted them.

The stdout handler's redaction filter rewrites records in place, and pytest's caplog handler
sits on the root logger after it, so caplog only ever sees redacted records. A test that
must show a module does not log a secret in the first place captures here instead: the
handler sits on the module's own logger, which handles a record before its parents do."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # A copy: the root handler's filter will rewrite this very record a moment later.
        self.records.append(logging.makeLogRecord(dict(vars(record))))


@contextmanager
def raw_records(*logger_names: str) -> Iterator[list[logging.LogRecord]]:
    """Collect every record (DEBUG and up) of the named loggers and their children."""
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
