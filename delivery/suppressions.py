"""Suppressed addresses: opted out or bounced, never sent to on that channel."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from audit.services import audit_append
from comcenter.lib.hashing import sha256_hex
from delivery.models import Suppression


def address_key(*, channel: str, address: str) -> str:
    """An address as suppressions store and compare it (email is case-insensitive)."""
    address = address.strip()
    return address.lower() if channel == "email" else address


def suppression_add(*, channel: str, address: str, reason: str, actor: str, note: str = "") -> bool:
    """Stop sending to an address on a channel; returns False if it was already suppressed."""
    with transaction.atomic():
        row, created = Suppression.objects.get_or_create(
            channel=channel,
            address=address_key(channel=channel, address=address),
            defaults={"reason": reason, "note": note},
        )
        if created:
            audit_append(
                kind="suppression.added",
                actor=actor,
                data={
                    "suppression": row.pk,
                    "channel": channel,
                    "reason": reason,
                    "address_sha256": sha256_hex(row.address),
                },
            )
    return created


def suppression_remove(*, suppression: Suppression, actor: str) -> None:
    """Lift a suppression (sends to that address resume), audited: the lineage names the
    channel, the reason it had and a hash of the address, never the address itself."""
    with transaction.atomic():
        audit_append(
            kind="suppression.removed",
            actor=actor,
            data={
                "suppression": suppression.pk,
                "channel": suppression.channel,
                "reason": suppression.reason,
                "address_sha256": sha256_hex(suppression.address),
            },
        )
        suppression.delete()


def suppressed_addresses(*, channel: str, addresses: Iterable[str]) -> set[str]:
    """Which of these addresses are suppressed on `channel` (compared as stored)."""
    wanted = {address_key(channel=channel, address=a) for a in addresses}
    if not wanted:
        return set()
    return set(
        Suppression.objects.filter(channel=channel, address__in=wanted).values_list(
            "address", flat=True
        )
    )
