"""Writing lineage rows, sealing them into the audit chain, and verifying it.

Every state change of an event or message calls a writer here in the same transaction as the
change itself, so the lineage can never disagree with the state. Rows are insert-only; the
sealer chains them afterwards in batches (see `audit_seal`)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditRecord, AuditSeal
from comcenter.lib.context import get_request_id
from comcenter.lib.db import column, is_postgres, quote, rows_insert
from comcenter.lib.hashing import canonical_json, sha256_hex
from comcenter.lib.metrics import AUDIT_HEAD_FINGERPRINT, AUDIT_HEAD_SEQ, AUDIT_SEALED_ROWS

log = logging.getLogger(__name__)


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
    """An unsaved lineage row; the request id defaults to the one bound to this context.

    Built with positional values, Django's fast path (half the cost of keywords: lineage rows
    are built by the thousand per batch), in the order of the model's fields
    (tests/audit/test_build.py pins it)."""
    return AuditRecord(
        None,
        _at_default(),
        kind,
        request_id or get_request_id(),
        event_uid,
        message_uid,
        recipient_id,
        actor,
        data or {},
    )


@functools.cache
def _at_default() -> Any:
    """`at`'s database default, as Django leaves it on an unsaved row. One shared instance:
    the insert compiles it and never changes it, and a saved row gets the database's value."""
    return AuditRecord._meta.get_field("at").get_default()


def audit_append(**fields: Any) -> None:
    """Insert one lineage row (keyword arguments of `audit_build`)."""
    audit_build(**fields).save(force_insert=True)


def audit_append_many(records: Iterable[AuditRecord]) -> None:
    """Insert many lineage rows (COPY on PostgreSQL)."""
    rows_insert(AuditRecord, list(records))


# --- the hash chain ------------------------------------------------------------------------
#
# A seal covers the rows with ids first_id..last_id except its `gaps`, in id order, and holds
# the SHA-256 of each. Its header (below) names the previous seal's hash and is signed with
# HMAC-SHA256 and AUDIT_KEY, so the chain cannot be rewritten, shortened in the middle or
# extended without the key, whatever rights someone has on the tables. Rows are never
# touched again: a seal is one INSERT of one row per batch.

GENESIS = "0" * 64
SEAL_FORMAT = 1
ROW_HASH_BYTES = 32
_SEAL_LOCK_ID = 7_204_311  # PostgreSQL advisory lock: one sealer at a time, on every node
# How long a missing id must stay missing, after every transaction that was running when it
# was first seen has ended, before a seal may skip it (see _settled_horizon).
GAP_SETTLE_SECONDS = 0.5

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


def audit_json_value(value: Any) -> Any:
    """A lineage field as JSON has it: times in ISO 8601, ids as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def audit_row_hash(row: Mapping[str, Any]) -> bytes:
    """SHA-256 of one row's CHAINED_FIELDS as canonical JSON: every field an auditor relies on,
    its id included (so two rows cannot swap places)."""
    # The fields' JSON forms spelled out (what audit_json_value does, without testing each
    # value's type): this runs for every row the sealer and the verifier read.
    event_uid, message_uid = row["event_uid"], row["message_uid"]
    chained = {
        "id": row["id"],
        "at": row["at"].isoformat(),
        "kind": row["kind"],
        "request_id": row["request_id"],
        "event_uid": None if event_uid is None else str(event_uid),
        "message_uid": None if message_uid is None else str(message_uid),
        "recipient_id": row["recipient_id"],
        "actor": row["actor"],
        "data": row["data"],
    }
    return hashlib.sha256(canonical_json(chained).encode("utf-8")).digest()


def audit_seal_header(
    *,
    seq: int,
    first_id: int,
    last_id: int,
    gaps: list[int],
    row_hashes: bytes,
    prev_hash: str,
    sealed_at: datetime,
) -> str:
    """The text a seal's HMAC signs (canonical JSON; `rows` is the SHA-256 of the row hashes
    concatenated in id order)."""
    return canonical_json(
        {
            "v": SEAL_FORMAT,
            "seq": seq,
            "first_id": first_id,
            "last_id": last_id,
            "gaps": gaps,
            "rows": sha256_hex(row_hashes),
            "prev_hash": prev_hash,
            "sealed_at": sealed_at.isoformat(),
        }
    )


# What a seal's header covers: every column but its own hash.
SEAL_FIELDS = ("seq", "first_id", "last_id", "gaps", "row_hashes", "prev_hash", "sealed_at")


def audit_seal_sign(header: str) -> str:
    key = settings.AUDIT_KEY.encode("utf-8")
    return hmac.new(key, header.encode("utf-8"), hashlib.sha256).hexdigest()


def audit_clock() -> datetime:
    """The database's clock on PostgreSQL (one clock for every node); SQLite is one machine."""
    if not is_postgres():
        return timezone.now()
    with connection.cursor() as cursor:
        # The wall clock, not the transaction's start: a row's `at` is its transaction's start.
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


@dataclass(frozen=True)
class _Observation:
    at: float  # time.monotonic()
    running: frozenset[str]  # ids of the other transactions running at that moment
    last_id: int  # the highest id handed out at that moment


_observations: deque[_Observation] = deque(maxlen=64)


def _settled_horizon() -> int:
    """The highest id at or below which every id is final: held by a committed row, or never
    to be (a rolled-back insert). Ids come from a sequence when a row is inserted, but rows
    become visible when their transaction commits, so a visible id 101 says nothing yet
    about 100.

    SQLite runs one writer at a time (IMMEDIATE transactions, and the sealer's is one), so
    whatever is not visible now never will be. On PostgreSQL, each call records the
    sequence's position and the transactions running; a record is settled once none of those
    transactions is still running and GAP_SETTLE_SECONDS have passed (covering the instant
    between an insert taking its id and its transaction getting a transaction id)."""
    if not is_postgres():
        return 2**63 - 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_current_xact_id_if_assigned()::text, "
            "ARRAY(SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x), "
            "pg_sequence_last_value(pg_get_serial_sequence(%s, 'id'))",
            [AuditRecord._meta.db_table],
        )
        own, xip, last_value = cursor.fetchone()
    running = frozenset(xip) - {own}
    now = time.monotonic()
    settled = 0
    while (
        _observations
        and not (_observations[0].running & running)
        and now - _observations[0].at >= GAP_SETTLE_SECONDS
    ):
        settled = _observations.popleft().last_id
    if settled:
        # Keep the settled position for the next call.
        _observations.appendleft(_Observation(0.0, frozenset(), settled))
    _observations.append(_Observation(now, running, last_value or 0))
    return settled


def audit_seal(*, batch: int = 2000, limit: int | None = None) -> int:
    """Seal new lineage rows in batches of at most `batch`; returns how many were sealed.

    Rows are sealed in id order, a contiguous run at a time: a missing id ends the run until
    it is settled (see `_settled_horizon`), so a row committed late is never left outside
    the seal that covers its id. Runs from the delivery ticker (at most `limit` rows a pass,
    so the work is spread evenly) and as a periodic task that seals whatever is left; safe
    to run concurrently (one at a time)."""
    if not _unsealed_rows():
        return 0
    sealed = 0
    while limit is None or sealed < limit:
        count = _seal_batch(batch if limit is None else min(batch, limit - sealed))
        sealed += count
        if count < batch:
            break
    return sealed


def _unsealed_rows() -> bool:
    """Whether a lineage row has an id above the newest seal's last one: one read without
    the sealer's lock or transaction, so that a pass with nothing to seal (most ticker
    passes when idle, four a second) costs one statement instead of four. A row committed
    just after it is sealed by the next call, as one committed just after the sealer's own
    read would be."""
    with connection.cursor() as cursor:
        cursor.execute(_unsealed_sql())
        (found,) = cursor.fetchone()
    return bool(found)


@functools.cache
def _unsealed_sql() -> str:
    rows, seals = quote(AuditRecord._meta.db_table), quote(AuditSeal._meta.db_table)
    last_id, seq = column(AuditSeal, "last_id")[0], column(AuditSeal, "seq")[0]
    row_id = column(AuditRecord, "id")[0]
    # The highest id against the newest seal's last one: MAX of the primary key is one step
    # down its index whatever the table's size. `EXISTS (… WHERE id > that)` asked the same,
    # but PostgreSQL planned it as a sequential scan expecting an early match, and read every
    # sealed row to find none (ms per call at a few hundred thousand rows, four calls a
    # second when idle). Ids start at 1, so with no seal yet any row counts; no rows: false.
    return (
        f"SELECT COALESCE((SELECT MAX({row_id}) FROM {rows}) > "  # noqa: S608
        f"COALESCE((SELECT {last_id} FROM {seals} ORDER BY {seq} DESC LIMIT 1), 0), FALSE)"
    )


def _seal_batch(batch: int) -> int:
    with transaction.atomic():
        if is_postgres():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEAL_LOCK_ID])
        # On SQLite the IMMEDIATE transaction already serializes writers.
        head = AuditSeal.objects.order_by("-seq").values("seq", "last_id", "hash").first()
        after = head["last_id"] if head else None
        rows = AuditRecord.objects.order_by("id").values(*CHAINED_FIELDS)
        rows = list((rows.filter(id__gt=after) if after is not None else rows)[:batch])
        if not rows:
            return 0
        horizon: int | None = None  # read only when a missing id is met
        if after is None:
            after = rows[0]["id"] - 1  # the first seal starts at the lowest id there is
        taken: list[dict[str, Any]] = []
        gaps: list[int] = []
        expected = after + 1
        for row in rows:
            if row["id"] != expected:
                if horizon is None:
                    horizon = _settled_horizon()
                if row["id"] - 1 > horizon:
                    break  # an id below this one may still be committed
                gaps.extend(range(expected, row["id"]))
            taken.append(row)
            expected = row["id"] + 1
        if not taken:
            return 0
        seq = head["seq"] + 1 if head else 1
        prev_hash = head["hash"] if head else GENESIS
        row_hashes = b"".join(audit_row_hash(row) for row in taken)
        fields = {
            "seq": seq,
            "first_id": after + 1,
            "last_id": taken[-1]["id"],
            "gaps": gaps,
            "row_hashes": row_hashes,
            "prev_hash": prev_hash,
            "sealed_at": audit_clock(),
        }
        digest = audit_seal_sign(audit_seal_header(**fields))
        AuditSeal.objects.create(**fields, hash=digest)
        transaction.on_commit(lambda: _publish_head(seq, digest, len(taken)))
    return len(taken)


def _publish_head(seq: int, digest: str, rows: int) -> None:
    """The chain head outside the database: a log line per seal and the metrics, so that a
    cut of the newest seals together with their rows shows against what was published."""
    AUDIT_SEALED_ROWS.inc(rows)
    AUDIT_HEAD_SEQ.set(seq)
    AUDIT_HEAD_FINGERPRINT.set(int(digest[:12], 16))
    log.info("audit chain sealed", extra={"seal": seq, "head": f"{seq}:{digest}", "rows": rows})


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    unsealed: int
    first_bad_id: int | None = None
    problem: str = ""
    seals: int = 0
    head: str = ""  # "seq:hash" of the newest seal


@dataclass
class _Walk:
    """The verifier's state: the rows in id order, read ahead one at a time."""

    rows: Any
    current: dict[str, Any] | None = None
    checked: int = 0
    anchors: set[tuple[Any, Any]] = field(default_factory=set)

    def peek(self) -> dict[str, Any] | None:
        if self.current is None:
            self.current = next(self.rows, None)
            if self.current is not None and self.current["kind"] == "audit.purged":
                data = self.current["data"] or {}
                self.anchors.add((data.get("first_kept_seq"), data.get("anchor")))
        return self.current

    def take(self) -> None:
        self.current = None


class _Broken(Exception):
    def __init__(self, row_id: int | None, problem: str) -> None:
        super().__init__(problem)
        self.row_id = row_id
        self.problem = problem


def _chunked(queryset: Any, key: str, chunk: int) -> Any:
    """Every row of `queryset` in `key` order, read `chunk` rows per query."""
    last = None
    while True:
        page = queryset if last is None else queryset.filter(**{f"{key}__gt": last})
        rows = list(page.order_by(key)[:chunk])
        yield from rows
        if len(rows) < chunk:
            return
        last = rows[-1][key]


def audit_verify(*, expect_head: str = "", chunk: int = 5000) -> ChainReport:
    """Check every seal and every row.

    Detected, each naming the first bad row (or the seal's first row): a row altered (its
    hash differs from the seal's), inserted (an id the seal does not list, or below the
    chain's start), removed (an id the seal lists is missing), rows reordered (the id is
    hashed); a seal altered, forged or re-hashed without AUDIT_KEY (its HMAC), removed or
    reordered (seq and prev_hash); a chain that starts after seal 1 without the record of a
    retention purge that kept it; a row left unsealed longer than AUDIT_SEAL_INTERVAL_SECONDS
    (a stopped sealer, or seals cut off the end while their rows stayed). A cut of the newest
    seals together with all their rows leaves a shorter, valid chain: `expect_head` (a
    "seq:hash" published in the log or by an earlier verification) catches that."""
    walk = _Walk(rows=_chunked(AuditRecord.objects.values(*CHAINED_FIELDS), "id", chunk))
    seals = _chunked(
        AuditSeal.objects.values(*SEAL_FIELDS, "hash"),
        "seq",
        100,  # seals a query: each holds up to 64 KB of row hashes
    )
    previous: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    count = 0
    try:
        for seal in seals:
            _check_seal(seal, previous, walk)
            first = first or seal
            previous = seal
            count += 1
        unsealed = _check_unsealed(walk)
        # Checked last: the purge's own row may be among the newest, unsealed rows.
        if (
            first is not None
            and first["seq"] != 1
            and (first["seq"], first["prev_hash"]) not in walk.anchors
        ):
            raise _Broken(
                first["first_id"],
                f"the chain starts at seal {first['seq']} and no retention purge kept it",
            )
        head = f"{previous['seq']}:{previous['hash']}" if previous else ""
        if expect_head:
            _check_expected_head(expect_head, previous)
    except _Broken as broken:
        return ChainReport(
            False, walk.checked, 0, broken.row_id, broken.problem, count, _head(previous)
        )
    return ChainReport(True, walk.checked, unsealed, seals=count, head=head)


def _head(seal: Mapping[str, Any] | None) -> str:
    return f"{seal['seq']}:{seal['hash']}" if seal else ""


def _check_seal(seal: dict[str, Any], previous: dict[str, Any] | None, walk: _Walk) -> None:
    first_id, last_id, seq = seal["first_id"], seal["last_id"], seal["seq"]
    if previous is not None:
        if seq != previous["seq"] + 1:
            raise _Broken(first_id, f"seal {previous['seq'] + 1} is missing (next is {seq})")
        if seal["prev_hash"] != previous["hash"]:
            raise _Broken(first_id, f"seal {seq} does not link to seal {previous['seq']}")
        if first_id != previous["last_id"] + 1:
            raise _Broken(first_id, f"seal {seq} does not start where seal {seq - 1} ends")
    elif seq == 1 and seal["prev_hash"] != GENESIS:
        raise _Broken(first_id, "seal 1 does not start the chain")
    row_hashes = bytes(seal["row_hashes"])
    header = audit_seal_header(
        **{**{name: seal[name] for name in SEAL_FIELDS}, "row_hashes": row_hashes}
    )
    if not hmac.compare_digest(audit_seal_sign(header), seal["hash"]):
        raise _Broken(first_id, f"seal {seq} is not signed with AUDIT_KEY (altered or forged)")
    gaps = set(seal["gaps"])
    expected = (i for i in range(first_id, last_id + 1) if i not in gaps)
    if previous is None:
        row = walk.peek()
        if row is not None and row["id"] < first_id:
            raise _Broken(row["id"], f"row before the start of the chain (seal {seq})")
    for index, row_id in enumerate(expected):
        row = walk.peek()
        if row is None or row["id"] > row_id:
            raise _Broken(row_id, f"row removed (listed by seal {seq})")
        if row["id"] < row_id:
            raise _Broken(row["id"], f"row inserted (not listed by seal {seq})")
        listed = row_hashes[index * ROW_HASH_BYTES : (index + 1) * ROW_HASH_BYTES]
        if audit_row_hash(row) != listed:
            raise _Broken(row_id, f"row content does not match seal {seq}")
        walk.take()
        walk.checked += 1
    row = walk.peek()
    if row is not None and row["id"] <= last_id:
        raise _Broken(row["id"], f"row inserted (not listed by seal {seq})")


def _check_unsealed(walk: _Walk) -> int:
    """Rows after the newest seal: none may be older than the sealing interval."""
    oldest = audit_clock() - timedelta(seconds=settings.AUDIT_SEAL_INTERVAL_SECONDS)
    unsealed = 0
    while (row := walk.peek()) is not None:
        if row["at"] < oldest:
            raise _Broken(
                row["id"],
                f"row unsealed for longer than {settings.AUDIT_SEAL_INTERVAL_SECONDS} s",
            )
        unsealed += 1
        walk.take()
    return unsealed


def _check_expected_head(expect_head: str, newest: Mapping[str, Any] | None) -> None:
    seq_text, _, digest = expect_head.partition(":")
    seq = int(seq_text)
    if newest is None or newest["seq"] < seq:
        raise _Broken(
            None, f"the chain ends before the published head seal {seq} (newest rows cut)"
        )
    found = AuditSeal.objects.filter(seq=seq).values_list("hash", flat=True).first()
    if found is None or not hmac.compare_digest(found, digest):
        raise _Broken(None, f"seal {seq} differs from the published head")


def audit_unsealed_count() -> int:
    """Lineage rows not sealed yet (after the newest seal)."""
    last_id = AuditSeal.objects.order_by("-seq").values_list("last_id", flat=True).first()
    return AuditRecord.objects.filter(id__gt=last_id or 0).count()
