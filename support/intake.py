"""The shape of a `ticket.created` event's `data` (SPEC §10), checked at the intake.

`events` calls `ticket_data_validate` through `settings.EVENT_DATA_VALIDATORS` before it
stores anything, so a malformed ticket is a 400 with field-level detail under `data` and
leaves no row behind."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from events.serializers import StrictSerializer

MAX_LINKED_ORDERS = 20


class CustomerSerializer(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class LinkedOrderSerializer(StrictSerializer):
    number = serializers.CharField(max_length=100)
    email = serializers.EmailField(max_length=254)
    status = serializers.CharField(max_length=100)
    carrier = serializers.CharField(max_length=100, required=False, allow_blank=True)
    tracking_url = serializers.URLField(max_length=500, required=False, allow_blank=True)


class TicketDataSerializer(StrictSerializer):
    ticket_id = serializers.CharField(max_length=100)
    subject = serializers.CharField(max_length=500, allow_blank=True)
    body = serializers.CharField(max_length=20_000, allow_blank=True, trim_whitespace=False)
    channel = serializers.CharField(max_length=30)
    customer = CustomerSerializer()
    order_number = serializers.CharField(max_length=100, required=False, allow_blank=True)
    linked_orders = serializers.ListField(
        child=LinkedOrderSerializer(), required=False, max_length=MAX_LINKED_ORDERS
    )

    def validate_ticket_id(self, value: str) -> str:
        if "/" in value or not value.strip():
            raise serializers.ValidationError("A ticket id cannot be blank or contain '/'.")
        return value


_validator = TicketDataSerializer()


def ticket_data_validate(data: Any) -> dict[str, Any]:
    """The validated ticket data; raises DRF's ValidationError with per-field messages."""
    return dict(_validator.run_validation(data))
