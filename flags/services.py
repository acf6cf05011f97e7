"""Reading and setting feature flags.

Precedence of the effective value, per flag:
1. the environment, when it sets the flag to its *safe* value (registry.py) — an operator
   cannot override `DISABLE_SEND=true` from the environment;
2. the operator's value (a `Flag` row written by the admin, the command or the guard);
3. the environment's value;
4. the default.

`flag_is_on` is called right before every send, so it must not query the database each
time. Each process keeps the effective values for `FLAG_CACHE_SECONDS` (2 s by default) and
then reads the whole (tiny) table again in one query. The cache is per process on purpose:
it needs no shared cache (the embedded default runs with the local-memory cache) and, with
a 2 s window, a change reaches every web and worker node within the promised 5 s however
many nodes there are. A database error while refreshing is raised to the caller rather than
answered from a stale or guessed value: a worker that cannot read its gates cannot record a
send either, so it must not send.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Now

from audit.services import audit_append
from flags.models import Flag, FlagChange, FlagSource
from flags.registry import FLAGS, flag_definition

# Monotonic, so a wall-clock jump cannot freeze the cache; tests replace it to move time.
_clock = time.monotonic

# (expires_at, {name: effective value}). Replaced as a whole, never mutated, so concurrent
# threads of one process see either the old or the new snapshot and need no lock.
_snapshot: tuple[float, dict[str, bool]] | None = None


def _max_length(name: str) -> int:
    field = FlagChange._meta.get_field(name)
    assert isinstance(field, models.CharField)
    assert field.max_length is not None
    return field.max_length


REASON_MAX_LENGTH = _max_length("reason")
ACTOR_MAX_LENGTH = _max_length("actor")


class EffectiveSource:
    """Where a flag's effective value comes from (shown in the admin and by `manage.py flag`)."""

    ENV_FORCED_SAFE = "env (forced safe)"
    OPERATOR = "operator"
    ENV = "env"
    DEFAULT = "default"


@dataclass(frozen=True)
class FlagState:
    name: str
    description: str
    effective: bool
    source: str
    db_value: bool | None
    env_value: bool | None
    default: bool
    safe: bool
    updated_at: datetime | None
    updated_by: str
    reason: str


def _resolve(name: str, db_value: bool | None) -> tuple[bool, str]:
    """The effective value of a flag and its source, from the operator's value (or None)."""
    definition = flag_definition(name)
    env_value: bool | None = settings.FLAG_ENV.get(name)
    if env_value is not None and env_value == definition.safe:
        return env_value, EffectiveSource.ENV_FORCED_SAFE
    if db_value is not None:
        return db_value, EffectiveSource.OPERATOR
    if env_value is not None:
        return env_value, EffectiveSource.ENV
    return definition.default, EffectiveSource.DEFAULT


def _load_effective() -> dict[str, bool]:
    rows = dict(Flag.objects.filter(name__in=FLAGS).values_list("name", "value"))
    return {name: _resolve(name, rows.get(name))[0] for name in FLAGS}


def flag_is_on(name: str) -> bool:
    """The effective value of a flag, at most `FLAG_CACHE_SECONDS` old in this process.

    Unknown names raise KeyError (a typo must not read as "off")."""
    global _snapshot
    flag_definition(name)
    now = _clock()
    snapshot = _snapshot
    if snapshot is None or now >= snapshot[0]:
        snapshot = (now + settings.FLAG_CACHE_SECONDS, _load_effective())
        _snapshot = snapshot
    return snapshot[1][name]


def flags_forget_cache() -> None:
    """Drop this process's cached values; the next `flag_is_on` reads the database."""
    global _snapshot
    _snapshot = None


def flag_states() -> list[FlagState]:
    """Every flag, with its effective value and where it comes from, read fresh (not cached)."""
    rows = {row.name: row for row in Flag.objects.filter(name__in=FLAGS)}
    states = []
    for name, definition in FLAGS.items():
        row = rows.get(name)
        db_value = row.value if row else None
        effective, source = _resolve(name, db_value)
        states.append(
            FlagState(
                name=name,
                description=definition.description,
                effective=effective,
                source=source,
                db_value=db_value,
                env_value=settings.FLAG_ENV.get(name),
                default=definition.default,
                safe=definition.safe,
                updated_at=row.updated_at if row else None,
                updated_by=row.updated_by if row else "",
                reason=row.reason if row else "",
            )
        )
    return states


def flag_set(*, name: str, value: bool, actor: str, reason: str, source: str) -> FlagChange:
    """Record the operator's value of a flag, with who, why and the effective value after.

    Setting a value that a safe environment value masks is allowed (it takes effect when
    the environment changes) and the recorded `effective_value` shows that it is masked.
    Raises KeyError for an unknown flag and ValueError for a missing reason or actor."""
    flag_definition(name)
    reason = reason.strip()
    actor = actor.strip()
    if not reason:
        raise ValueError("a reason is required to change a flag")
    if len(reason) > REASON_MAX_LENGTH:
        raise ValueError(f"the reason is longer than {REASON_MAX_LENGTH} characters")
    if not actor:
        raise ValueError("an actor is required to change a flag")
    if len(actor) > ACTOR_MAX_LENGTH:
        raise ValueError(f"the actor is longer than {ACTOR_MAX_LENGTH} characters")
    if source not in FlagSource.values:
        raise ValueError(f"unknown flag change source {source!r}")

    with transaction.atomic():
        # The row lock serialises concurrent changes of one flag, so each change records the
        # value it really replaced; get_or_create handles two first-time writers racing.
        row, created = Flag.objects.select_for_update().get_or_create(
            name=name, defaults={"value": value, "updated_by": actor, "reason": reason}
        )
        old_value = None if created else row.value
        old_effective = _resolve(name, old_value)[0]
        if not created:
            row.value = value
            row.updated_by = actor
            row.reason = reason
            row.updated_at = Now()
            row.save(update_fields=["value", "updated_by", "reason", "updated_at"])
        effective, effective_source = _resolve(name, value)
        change = FlagChange.objects.create(
            name=name,
            old_value=old_value,
            new_value=value,
            effective_value=effective,
            source=source,
            actor=actor,
            reason=reason,
        )
        audit_append(
            kind="flag.changed",
            actor=actor,
            data={
                "flag": name,
                "old_value": old_value,
                "new_value": value,
                "old_effective": old_effective,
                "effective": effective,
                "effective_source": effective_source,
                "source": source,
                "reason": reason,
                "change_id": change.pk,
            },
        )
        # Forget now so this process sees its own change inside the transaction, and again
        # after commit so a snapshot re-read meanwhile by another thread is not kept.
        flags_forget_cache()
        transaction.on_commit(flags_forget_cache)
    return change
