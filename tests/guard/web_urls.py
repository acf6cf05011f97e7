"""The project's URLs plus `/test/fail` (a view that raises, answered 500 by Django's own
handler); a middleware that delays a request by its `X-Test-Delay-Ms` header, and one that
removes the response header named in the file TEST_DROP_HEADER_FILE while that file exists."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import path

from comcenter.urls import handler400, handler403, handler404, handler500  # noqa: F401
from comcenter.urls import urlpatterns as project_urls


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a dependency failed")


urlpatterns = [path("test/fail", fail), *project_urls]


class AckDelayMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        delay = request.META.get("HTTP_X_TEST_DELAY_MS")
        if delay:
            time.sleep(int(delay) / 1000)
        return self.get_response(request)


class HeaderDropMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.switch = os.environ.get("TEST_DROP_HEADER_FILE", "")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.switch and os.path.exists(self.switch):
            with open(self.switch) as switch:
                del response[switch.read().strip()]
        return response
