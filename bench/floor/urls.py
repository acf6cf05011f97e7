from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from bench.floor.views import FloorIntake


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("api/v1/events", FloorIntake.as_view()),
    path("health", health),
]
