"""Writing lineage rows. Every state change of an event or message calls one of these in the
same transaction as the change itself, so the lineage can never disagree with the state."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from audit.models import AuditRecord
from comcenter.lib.context import get_request_id
from comcenter.lib.db import is_postgres, rows_insert
from comcenter.lib.hashing import canonical_json, sha256_hex


def audit_build(
    *,
    kind: str,
    request_id: str = "",
    event_uid: uuid.UUID | None = None,
    message_uid: uuid.UUID | None = None,
    recipient_id: str = "",
    actor: str = "",
    data: dict[str, Any] | None = None,
) -> AuditRecord:
    """An unsaved lineage row; the request id defaults to the one bound to this context."""
    return AuditRecord(
        kind=kind,
        request_id=request_id or get_request_id(),
        event_uid=event_uid,
        message_uid=message_uid,
        recipient_id=recipient_id,
        actor=actor,
        data=data or {},
    )


def audit_append(**fields: Any) -> None:
    """Insert one lineage row (keyword arguments of `audit_build`)."""
    audit_build(**fields).save(force_insert=True)


def audit_append_many(records: Iterable[AuditRecord]) -> None:
    """Insert many lineage rows (COPY on PostgreSQL)."""
    rows_insert(AuditRecord, list(records))


# --- the hash chain -------------------------------------------------------------------------

GENESIS = "0" * 64
_SEAL_LOCK_ID = 7_204_311  # PostgreSQL advisory lock: one sealer at a time, on every node


# The fields of a row that its hash covers, read as plain values (no model instances: the
# sealer and the verifier go through every row).
CHAINED_FIELDS = (
    "id",
    "at",
    "kind",
    "request_id",
    "event_uid",
    "message_uid",
    "recipient_id",
    "actor",
    "data",
)


def audit_row_digest(row: Mapping[str, Any], *, seq: int, prev_hash: str) -> str:
    """The hash of one row (its CHAINED_FIELDS): every field an auditor relies on, plus its
    place in the chain."""
    chained = {name: audit_json_value(row[name]) for name in CHAINED_FIELDS}
    return sha256_hex(canonical_json({**chained, "seq": seq, "prev_hash": prev_hash}))


def audit_json_value(value: Any) -> Any:
    """A lineage field as JSON has it: times in ISO 8601, ids as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def audit_seal(*, batch: int = 2000, limit: int | None = None) -> int:
    """Give unsealed rows their place in the hash chain; returns how many were sealed.

    Rows are chained in the order the sealer finds them (by id), not at insert time, so the
    intake never waits on a global lock. A row committed late with a lower id is simply
    sealed in a later run. Runs from the delivery ticker (at most `limit` rows a pass, so the
    work is spread evenly instead of a burst that saturated the machine once a minute) and as
    a periodic task that seals whatever is left; safe to run concurrently (one at a time)."""
    sealed = 0
    while limit is None or sealed < limit:
        with transaction.atomic():
            if is_postgres():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEAL_LOCK_ID])
            # On SQLite the IMMEDIATE transaction already serializes writers.
            head = (
                AuditRecord.objects.exclude(seq=None).order_by("-seq").values("seq", "hash").first()
            )
            seq = (head["seq"] or 0) if head else 0
            prev_hash = head["hash"] if head else GENESIS
            rows = list(
                AuditRecord.objects.filter(seq=None).order_by("id").values(*CHAINED_FIELDS)[:batch]
            )
            seals = []
            for row in rows:
                seq += 1
                digest = audit_row_digest(row, seq=seq, prev_hash=prev_hash)
                seals.append((row["id"], seq, prev_hash, digest))
                prev_hash = digest
            _write_seals(seals)
        sealed += len(rows)
        if len(rows) < batch:
            break
    return sealed


def _write_seals(seals: list[tuple[int, int, str, str]]) -> None:
    """One statement per batch with four array parameters. (Django's bulk_update builds a
    CASE with a branch per row, which PostgreSQL evaluates row by row: quadratic, and it
    starved the intake; a VALUES list of thousands of placeholders costs the client more to
    build than the update costs the server.)"""
    if not seals:
        return
    table = connection.ops.quote_name(AuditRecord._meta.db_table)
    with connection.cursor() as cursor:
        if is_postgres():
            ids, seqs, prev_hashes, hashes = (list(column) for column in zip(*seals, strict=True))
            cursor.execute(
                f"UPDATE {table} AS a SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash "  # noqa: S608 -- table name from the model, values bound
                "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) "
                "AS v(id, seq, prev_hash, hash) WHERE a.id = v.id",
                [ids, seqs, prev_hashes, hashes],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET seq = %s, prev_hash = %s, hash = %s WHERE id = %s",  # noqa: S608
                [(seq, prev, digest, pk) for pk, seq, prev, digest in seals],
            )


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    unsealed: int
    first_bad_id: int | None = None
    problem: str = ""


def audit_verify(*, chunk: int = 5000) -> ChainReport:
    """Walk the chain in order and recompute every hash.

    An altered row fails its own hash; a removed row breaks the sequence numbers and the
    next row's prev_hash; a re-hashed forgery still breaks the link to its successor."""
    expected_seq = 1
    prev_hash = GENESIS
    checked = 0
    last_seq = 0
    while True:
        rows = list(
            AuditRecord.objects.filter(seq__gt=last_seq)
            .order_by("seq")
            .values(*CHAINED_FIELDS, "seq", "prev_hash", "hash")[:chunk]
        )
        for row in rows:
            if row["seq"] != expected_seq:
                return ChainReport(
                    False,
                    checked,
                    0,
                    row["id"],
                    f"sequence gap: expected {expected_seq}, found {row['seq']}",
                )
            if row["prev_hash"] != prev_hash:
                return ChainReport(
                    False, checked, 0, row["id"], "prev_hash does not match the previous row"
                )
            if audit_row_digest(row, seq=row["seq"], prev_hash=prev_hash) != row["hash"]:
                return ChainReport(
                    False, checked, 0, row["id"], "row content does not match its hash"
                )
            prev_hash = row["hash"]
            expected_seq += 1
            checked += 1
            last_seq = row["seq"]
        if len(rows) < chunk:
            break
    unsealed = AuditRecord.objects.filter(seq=None).count()
    return ChainReport(True, checked, unsealed)
