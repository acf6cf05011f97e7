"""Settings of the web servers the live guard tests start: the project's, plus a test-only
failing view and an injectable ack delay (tests/guard/web_urls.py). Never used outside tests."""

from __future__ import annotations

from comcenter.settings import *  # noqa: F403
from comcenter.settings import MIDDLEWARE

ROOT_URLCONF = "tests.guard.web_urls"
# Inside the measurement middleware, so the delay is part of the measured ack.
_AT = MIDDLEWARE.index("guard.middleware.MeasurementMiddleware") + 1
# Outside the security headers, so it can take one away again.
MIDDLEWARE = [
    *MIDDLEWARE[:_AT],
    "tests.guard.web_urls.HeaderDropMiddleware",
    "tests.guard.web_urls.AckDelayMiddleware",
    *MIDDLEWARE[_AT:],
]
