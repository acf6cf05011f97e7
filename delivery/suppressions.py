"""Suppressed addresses: opted out, bounced or complained, never sent to on that channel
(category `all`) or never sent promotional messages (category `promotional`).

The lineage of every change names the channel, category, reason and a hash of the address,
never the address itself."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import NotRequired, TypedDict, Unpack

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from audit.services import audit_append
from comcenter.lib.db import column, is_postgres, prepared_rows, quote
from comcenter.lib.hashing import sha256_hex
from comcenter.lib.wire import E164
from delivery.models import Suppression
from templates.models import Category as TemplateCategory
from templates.models import Channel

# The channels whose recipients can be suppressed (a helpdesk reply goes to a ticket).
CHANNELS = (Channel.EMAIL, Channel.SMS)
LIFT_REASON_MAX_LENGTH = 500

# Which suppression categories stop a message of each template category.
STOPPED_BY: dict[str, frozenset[str]] = {
    TemplateCategory.TRANSACTIONAL: frozenset({Suppression.Category.ALL}),
    TemplateCategory.PROMOTIONAL: frozenset(
        {Suppression.Category.ALL, Suppression.Category.PROMOTIONAL}
    ),
}


def address_key(*, channel: str, address: str) -> str:
    """An address as suppressions store and compare it (email is case-insensitive)."""
    address = address.strip()
    return address.lower() if channel == "email" else address


def suppression_address_check(*, channel: str, address: str) -> str:
    """The address as stored (`address_key`) if it is one of `channel`'s; else ValueError
    with a message fit for the field (it never quotes the input)."""
    if channel not in CHANNELS:
        raise ValueError(f"Suppressions exist for {', '.join(CHANNELS)} only.")
    key = address_key(channel=channel, address=address)
    if channel == Channel.SMS:
        if not E164.match(key):
            raise ValueError("Enter an E.164 phone number such as +12025550123.")
        return key
    try:
        validate_email(key)
    except ValidationError:
        raise ValueError("Enter a valid email address.") from None
    return key


def _lineage(row: Suppression) -> dict[str, object]:
    return {
        "suppression": row.pk,
        "channel": row.channel,
        "category": row.category,
        "reason": row.reason,
        "address_sha256": sha256_hex(row.address),
    }


class SuppressionFields(TypedDict):
    """What `suppression_add` and `suppression_ensure` take (keyword arguments)."""

    channel: str
    address: str
    reason: str
    actor: str
    note: NotRequired[str]
    category: NotRequired[str]  # default: all
    source: NotRequired[str]  # default: the actor


def suppression_add(**fields: Unpack[SuppressionFields]) -> bool:
    """Stop sending to an address on a channel (every message, or only promotional ones);
    returns False if that category was already suppressed for it (the row is kept as it was).
    `source` says who or what asked (`api:<account>`, `admin:<user>`, `provider:<name>`)."""
    return suppression_ensure(**fields)[1]


def suppression_ensure(
    *,
    channel: str,
    address: str,
    reason: str,
    actor: str,
    note: str = "",
    category: str = Suppression.Category.ALL,
    source: str = "",
) -> tuple[Suppression, bool]:
    """`suppression_add` that also returns the row (created or the one already there)."""
    with transaction.atomic():
        row, created = Suppression.objects.get_or_create(
            channel=channel,
            address=address_key(channel=channel, address=address),
            category=category,
            defaults={"reason": reason, "note": note, "source": source or actor},
        )
        if created:
            audit_append(
                kind="suppression.added",
                actor=actor,
                data={**_lineage(row), "source": row.source},
            )
    return row, created


def suppression_remove(*, suppression: Suppression, actor: str, reason: str) -> bool:
    """Lift a suppression (sends to that address resume), audited with the operator's or
    service's `reason` (required: an unexplained lift of an opt-out is a compliance risk).
    Returns False when it was lifted meanwhile (then nothing is written)."""
    reason = reason.strip()
    if not reason:
        raise ValueError("lifting a suppression needs a reason")
    if len(reason) > LIFT_REASON_MAX_LENGTH:
        raise ValueError(f"the reason is longer than {LIFT_REASON_MAX_LENGTH} characters")
    with transaction.atomic():
        # The row lock makes two concurrent lifts one lift and one no-op: one lineage row.
        row = Suppression.objects.select_for_update().filter(pk=suppression.pk).first()
        if row is None:
            return False
        audit_append(
            kind="suppression.removed",
            actor=actor,
            data={**_lineage(row), "removal_reason": reason},
        )
        row.delete()
    return True


def suppression_find(*, channel: str, address: str) -> dict[str, Suppression]:
    """The suppressions of one address on a channel, by category."""
    rows = Suppression.objects.filter(
        channel=channel, address=address_key(channel=channel, address=address)
    ).order_by("category")
    return {row.category: row for row in rows}


def suppressed_addresses(*, channel: str, addresses: Iterable[str]) -> dict[str, frozenset[str]]:
    """Which of these addresses are suppressed on `channel`, each with its suppression
    categories (keys as `address_key` stores them); one query for the whole batch."""
    wanted = {address_key(channel=channel, address=a) for a in addresses}
    if not wanted:
        return {}
    found: dict[str, set[str]] = {}
    rows: Iterable[tuple[str, str]]
    if is_postgres():
        # Every batch reads it: one prepared statement (the addresses as one array
        # parameter) instead of a queryset built and compiled, and a new text per count.
        rows = prepared_rows(_suppressed_sql(), [channel, sorted(wanted)])
    else:
        rows = Suppression.objects.filter(channel=channel, address__in=wanted).values_list(
            "address", "category"
        )
    for address, category in rows:
        found.setdefault(address, set()).add(category)
    return {address: frozenset(categories) for address, categories in found.items()}


@functools.cache
def _suppressed_sql() -> str:
    address, channel, category = (
        column(Suppression, name)[0] for name in ("address", "channel", "category")
    )
    return (
        f"SELECT {address}, {category} FROM {quote(Suppression._meta.db_table)} "  # noqa: S608
        f"WHERE {channel} = %s AND {address} = ANY(%s)"
    )


def suppression_stops(*, categories: Iterable[str], template_category: str) -> bool:
    """Whether an address suppressed in `categories` may not get a message of a template of
    `template_category` (a promotional opt-out lets transactional mail through)."""
    # A category this table does not know is treated as the strictest one.
    stopping = STOPPED_BY.get(template_category, STOPPED_BY[TemplateCategory.PROMOTIONAL])
    return not stopping.isdisjoint(categories)


def suppression_categories(
    suppressed: Mapping[str, frozenset[str]], *, channel: str, address: str
) -> frozenset[str]:
    """The categories `address` is suppressed in, from a batch's `suppressed_addresses`."""
    return suppressed.get(address_key(channel=channel, address=address), frozenset())
