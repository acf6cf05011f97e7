"""The SMS gateway's callbacks (Twilio-shaped form posts, signed with `X-Twilio-Signature`):

    POST /api/v1/feedback/sms          status callbacks (MessageSid, MessageStatus, ErrorCode)
    POST /api/v1/feedback/sms/inbound  inbound messages (From, Body): STOP / START keywords

Order of checks: the signature (403 JSON when missing or wrong: nothing is read further),
the throttle (per provider, counted only for signed requests), the form (400 with the
failing fields). A valid callback is answered 204 whatever became of it, an unknown sid
included, so the gateway never retries one forever; an unknown sid's receipt waits as
`pending` in case it overtook our commit of the send (delivery/feedback.py). Twilio signs
no timestamp, so a captured callback can be replayed: the receipt is kept once per (sid,
status), and a replay changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, QueryDict
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import parsers, permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comcenter.lib.errors import ApiError, ErrorSerializer
from delivery.feedback import Feedback, feedback_receive, sms_keyword_receive
from delivery.models import ReceiptKind
from identity.throttles import FeedbackThrottle
from identity.twilio_signing import twilio_request_valid

# Our SMS provider's name (delivery/providers/sms.py): the attempts' `provider`.
SMS_PROVIDER = "twilio"
# Twilio's message statuses (its StatusCallback documentation).
STATUSES = (
    "accepted",
    "scheduled",
    "canceled",
    "queued",
    "sending",
    "sent",
    "failed",
    "delivered",
    "undelivered",
    "receiving",
    "received",
    "read",
    "partially_delivered",
)
# Error codes of a failed or undelivered message that say the number is gone.
NUMBER_CODES: dict[str, str] = {
    "21610": ReceiptKind.OPTED_OUT,  # the recipient replied STOP
    "21614": ReceiptKind.UNDELIVERABLE_NUMBER,  # not a mobile number
    "30006": ReceiptKind.UNDELIVERABLE_NUMBER,  # landline or unreachable carrier
}
SID = r"^[A-Za-z0-9]{2,64}$"
E164 = r"^\+[1-9][0-9]{6,14}$"


class SmsStatusInSerializer(serializers.Serializer):
    MessageSid = serializers.RegexField(SID, max_length=64)
    MessageStatus = serializers.ChoiceField(choices=STATUSES)
    ErrorCode = serializers.RegexField(r"^[0-9]{1,6}$", required=False, allow_blank=True)


class SmsInboundInSerializer(serializers.Serializer):
    MessageSid = serializers.RegexField(SID, max_length=64)
    From = serializers.RegexField(E164, max_length=16)
    Body = serializers.CharField(max_length=1600, allow_blank=True, trim_whitespace=False)


class TwilioSignature(permissions.BasePermission):
    """The request is signed with SMS_AUTH_TOKEN; else 403 before the throttle counts it."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        data = request.data
        lists = data.lists() if isinstance(data, QueryDict) else []
        params = [(name, value) for name, values in lists for value in values]
        if not twilio_request_valid(request._request, params):
            raise ApiError(403, "forbidden", "missing or invalid X-Twilio-Signature")
        request.feedback_source = SMS_PROVIDER  # type: ignore[attr-defined]
        return True


def sms_receipt_kind(status: str, error_code: str) -> str | None:
    """The receipt kind of a Twilio status; None for the ones on the way (queued, sent ...)."""
    if status in ("delivered", "read"):
        return ReceiptKind.DELIVERED
    if status in ("undelivered", "failed"):
        return NUMBER_CODES.get(error_code, ReceiptKind.FAILED)
    return None


_SIGNATURE = OpenApiParameter(
    "X-Twilio-Signature",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="base64(HMAC-SHA1(SMS_AUTH_TOKEN, FEEDBACK_PUBLIC_URL + path + the form's "
    "parameters sorted by name, each name followed by its value)).",
)
_COMMON: dict[int | str, Any] = {
    400: OpenApiResponse(ErrorSerializer, "A form field missing or invalid (named in detail)"),
    403: OpenApiResponse(ErrorSerializer, "X-Twilio-Signature missing or not matching"),
    415: OpenApiResponse(ErrorSerializer, "Body not application/x-www-form-urlencoded"),
    429: OpenApiResponse(ErrorSerializer, "Throttled (THROTTLE_FEEDBACK); see Retry-After"),
}


class _TwilioCallbackApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [TwilioSignature]
    throttle_classes = [FeedbackThrottle]
    parser_classes = [parsers.FormParser]


class SmsStatusApi(_TwilioCallbackApi):
    """POST /api/v1/feedback/sms"""

    @extend_schema(
        operation_id="feedback_sms_status",
        summary="SMS status callback (Twilio StatusCallback)",
        description=(
            "delivered/read -> the message becomes delivered; undelivered/failed -> "
            "undelivered, and ErrorCode 21610 (opt-out), 21614 or 30006 (not a mobile "
            "number) suppress the number. Other statuses, unknown sids and replays change "
            "nothing and are answered 204 too."
        ),
        request={"application/x-www-form-urlencoded": SmsStatusInSerializer},
        parameters=[_SIGNATURE],
        responses={204: OpenApiResponse(description="Received"), **_COMMON},
    )
    def post(self, request: Request) -> Response:
        form = SmsStatusInSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        sid, status = form.validated_data["MessageSid"], form.validated_data["MessageStatus"]
        code = form.validated_data.get("ErrorCode", "")
        kind = sms_receipt_kind(status, code)
        if kind is not None:
            feedback_receive(
                feedback=Feedback(
                    provider=SMS_PROVIDER,
                    provider_message_id=sid,
                    kind=kind,
                    source="twilio:status",
                    code=code,
                    dedupe_key=f"{sid}:{status}",
                )
            )
        return Response(status=204)


class SmsInboundApi(_TwilioCallbackApi):
    """POST /api/v1/feedback/sms/inbound"""

    @extend_schema(
        operation_id="feedback_sms_inbound",
        summary="Inbound SMS (Twilio messaging webhook): STOP and START keywords",
        description=(
            "A body of STOP, STOPALL, UNSUBSCRIBE, CANCEL, END or QUIT opts the sender out "
            "of SMS; START or UNSTOP lifts that opt-out. Anything else is ignored. Answered "
            "with an empty TwiML response (no reply is sent)."
        ),
        request={"application/x-www-form-urlencoded": SmsInboundInSerializer},
        parameters=[_SIGNATURE],
        responses={(200, "text/xml"): OpenApiResponse(description="Empty TwiML"), **_COMMON},
    )
    def post(self, request: Request) -> HttpResponse:
        form = SmsInboundInSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        sms_keyword_receive(
            number=form.validated_data["From"],
            body=form.validated_data["Body"],
            source="twilio:inbound",
        )
        return HttpResponse(
            '<?xml version="1.0" encoding="UTF-8"?><Response/>', content_type="text/xml"
        )
