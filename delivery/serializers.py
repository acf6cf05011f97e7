"""Input validation and published shapes of the suppressions API (delivery/apis.py)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from delivery.models import Suppression
from delivery.suppressions import CHANNELS, LIFT_REASON_MAX_LENGTH, suppression_address_check
from events.serializers import StrictSerializer


def _choice(choices: Any, **kwargs: Any) -> serializers.ChoiceField:
    # DRF's own message quotes the input; ours names the choices only (never echo input).
    values = [str(value) for value in choices]
    return serializers.ChoiceField(
        choices=values,
        error_messages={"invalid_choice": f"Not one of: {', '.join(values)}."},
        **kwargs,
    )


class SuppressionKeySerializer(StrictSerializer):
    """An address on a channel; the address comes back as suppressions store it (an email
    address lower-cased, surrounding spaces removed)."""

    channel = _choice(CHANNELS)
    address = serializers.CharField(
        max_length=254, help_text="An email address (email) or an E.164 number (sms)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            attrs["address"] = suppression_address_check(
                channel=attrs["channel"], address=attrs["address"]
            )
        except ValueError as exc:
            raise serializers.ValidationError({"address": [str(exc)]}) from None
        return attrs


class SuppressionLookupSerializer(SuppressionKeySerializer):
    """GET /api/v1/suppressions: the query."""


class SuppressionInSerializer(SuppressionKeySerializer):
    """POST /api/v1/suppressions: the body."""

    category = _choice(
        Suppression.Category,
        default=Suppression.Category.ALL,
        help_text="all: no message at all; promotional: no promotional message "
        "(transactional messages still go out).",
    )
    reason = _choice(Suppression.Reason)
    note = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class SuppressionLiftSerializer(SuppressionKeySerializer):
    """DELETE /api/v1/suppressions: the query."""

    category = _choice(Suppression.Category)
    reason = serializers.CharField(
        max_length=LIFT_REASON_MAX_LENGTH,
        help_text="Why sends to this address may resume; kept in the audit lineage.",
    )


class SuppressionOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel = _choice(CHANNELS)
    address = serializers.CharField()
    category = _choice(Suppression.Category)
    reason = _choice(Suppression.Reason)
    # A field named like Field.source: DRF's metaclass takes it out of the class attributes.
    source = serializers.CharField(  # type: ignore[assignment]
        help_text="api:<caller>, admin:<user>, provider:<name>, …"
    )
    note = serializers.CharField()
    created_at = serializers.DateTimeField()


class SuppressionListSerializer(serializers.Serializer):
    results = SuppressionOutSerializer(
        many=True, help_text="The address's suppressions, at most one per category."
    )
