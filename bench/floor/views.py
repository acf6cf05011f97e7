from __future__ import annotations

import hmac
import os
from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.floor.models import FloorEvent

_TOKEN = os.environ.get("FLOOR_TOKEN", "").encode()


class StaticBearer(BaseAuthentication):
    """A bearer token compared with FLOOR_TOKEN: the cheapest authentication there is."""

    def authenticate(self, request: Request) -> tuple[Any, str]:
        header = request.META.get("HTTP_AUTHORIZATION", "").encode()
        if not _TOKEN or not hmac.compare_digest(header, b"Bearer " + _TOKEN):
            raise exceptions.AuthenticationFailed()
        return (object(), "floor")


class FloorIntake(APIView):
    authentication_classes = [StaticBearer]
    permission_classes: list[Any] = []

    def post(self, request: Request) -> Response:
        data = request.data
        row = FloorEvent.objects.create(
            idempotency_key=str(data.get("idempotency_key", "")), payload=data
        )
        return Response({"id": str(row.pk), "status": "accepted"}, status=202)
