"""Our own source of the identity provider's signing keys.

Why not PyJWT's PyJWKClient (through simplejwt): it fetches with a 30 s timeout while holding
a lock, so a slow JWKS stalls every request of the process, and once its 5-minute cache
expires an outage rejects every token (and fetch errors surface as "Token is invalid",
simplejwt #773). Here:

- fetches go through `comcenter.lib.http` (User-Agent, JWKS_FETCH_TIMEOUT as a deadline, size
  cap) in a background thread, one at a time per process. A request that needs a fetch waits
  for it at most until that fetch's own deadline, then carries on with what is cached or
  receives the event into `auth_pending`; so no request waits on the JWKS longer than the
  timeout, and concurrent requests share the one fetch instead of queueing behind it;
- on-demand fetches (cold start, unknown `kid`, refresh-ahead) happen at most once per
  JWKS_REFETCH_COOLDOWN per process, and a `kid` that a successful fetch did not list is
  remembered as unknown for NEGATIVE_KID_SECONDS: random kids cannot force fetches;
- a `kid` is UNKNOWN (the token is refused) only when keys fetched after the token arrived
  do not list it. When our keys are older and the cool-down forbids a fetch, it is
  UNAVAILABLE: the token is held in `auth_pending` like during an outage, and verified once
  keys fetched after its arrival can be had (the identity provider may just have rotated);
- the last-known-good JWKS is kept in the database (`JwksState`) and stays usable for
  JWKS_STALE_GRACE_HOURS after it was fetched, by every process and node, including one that
  starts during an outage;
- the periodic task `jwks_refresh` fetches every minute on a worker; web processes read the
  newer keys from the database every DB_SYNC_SECONDS, and refresh ahead themselves when their
  keys are older than REFRESH_AHEAD_SECONDS (the workers may be down).

The fetch thread never touches the database (a connection opened there would outlive it); the
outcome of a fetch is written by the next caller that runs inside a request or a task.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.dispatch import Signal

from comcenter.lib import http
from identity.models import JwksState

log = logging.getLogger(__name__)

MAX_KID_LENGTH = 256
MAX_KEYS = 64
MAX_JWKS_BYTES = 256 * 1024
MIN_RSA_BITS = 2048
REFRESH_AHEAD_SECONDS = 300.0
DB_SYNC_SECONDS = 30.0
NEGATIVE_KID_SECONDS = 300.0
NEGATIVE_KID_MAX = 4096
ABANDON_FETCH_SECONDS = 30.0

# What each algorithm we may pin needs of a key (kty, crv); other keys of the JWKS (encryption
# keys, other curves, symmetric keys) are ignored.
_KEY_SHAPES: dict[str, tuple[str, str | None]] = {"RS256": ("RSA", None), "ES256": ("EC", "P-256")}
# Only the public members are read, so a JWKS that wrongly publishes private parts still
# yields verification keys only.
_PUBLIC_MEMBERS = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y")}


# Sent when a fetch succeeds after a failure (or a cold start): whoever holds what waited
# for the keys (the events app's auth_pending events) connects here, so that this app needs
# to know nothing of it.
keys_recovered = Signal()


class JwksError(Exception):
    """The JWKS document cannot be used (not JSON, no usable signing key)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: Any  # a cryptography public key object


class KeyStatus(enum.Enum):
    FOUND = "found"
    UNKNOWN = "unknown"  # the JWKS, as fetched successfully, lists no such kid
    UNAVAILABLE = "unavailable"  # no usable key can be had now: receive-and-queue


@dataclass(frozen=True)
class KeyLookup:
    status: KeyStatus
    key: SigningKey | None = None


def jwks_parse(document: Any, *, algorithms: Sequence[str]) -> dict[str, SigningKey]:
    """The usable signing keys of a JWKS by kid; JwksError when there is none.

    A key is usable when it is a signature key (`use`, `key_ops`), its kid is a sane string,
    and its `kty`/`crv` fit an algorithm we pin (its `alg` when it names one). The first key
    of a kid wins."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("not a JWKS document (no 'keys' list)")
    keys: dict[str, SigningKey] = {}
    for entry in document["keys"][:MAX_KEYS]:
        key = _signing_key(entry, algorithms)
        if key is not None and key.kid not in keys:
            keys[key.kid] = key
    if not keys:
        raise JwksError(f"no usable signing key for {', '.join(algorithms)}")
    return keys


def _signing_key(entry: Any, algorithms: Sequence[str]) -> SigningKey | None:
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        return None
    if entry.get("use", "sig") != "sig":
        return None
    key_ops = entry.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    kty, crv = entry.get("kty"), entry.get("crv")
    alg = entry.get("alg")
    if alg is None:  # a key without `alg` serves the pinned algorithm its shape fits
        alg = next((a for a in algorithms if _fits(a, kty, crv)), None)
    if not isinstance(alg, str) or alg not in algorithms or not _fits(alg, kty, crv):
        return None
    members = _PUBLIC_MEMBERS[_KEY_SHAPES[alg][0]]  # _fits: the key's kty is the shape's
    public = {name: entry[name] for name in members if name in entry}
    try:
        key = jwt.PyJWK(public, algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return None
    return SigningKey(kid=kid, alg=alg, key=key)


def _fits(alg: str, kty: Any, crv: Any) -> bool:
    shape = _KEY_SHAPES.get(alg)
    return shape is not None and kty == shape[0] and (shape[1] is None or crv == shape[1])


@dataclass(frozen=True)
class _Download:
    document: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class _Outcome:
    """A fetch's result not yet written to the database."""

    at: float
    document: dict[str, Any]
    error: str
    recovered: bool  # keys came back after a failure (or a cold start): wake the verifier


@dataclass
class _Fetch:
    deadline: float  # monotonic
    done: threading.Event = field(default_factory=threading.Event)


class KeySource:
    """The keys of one JWKS URL in this process (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()  # guards the state below; never held during I/O
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None  # epoch seconds of the fetch behind _keys
        self._last_ok: bool | None = None  # this process's latest attempt; None: none yet
        self._last_error = ""
        self._next_fetch = 0.0  # monotonic; no on-demand fetch before it (the cool-down)
        self._inflight: _Fetch | None = None
        self._unknown: dict[str, float] = {}  # kid -> monotonic expiry (negative cache)
        self._next_db_sync = 0.0
        self._unsaved_ok: _Outcome | None = None
        self._unsaved_error: _Outcome | None = None

    # --- reading keys ------------------------------------------------------------------

    def lookup(self, kid: str, *, listed_since: float | None = None) -> KeyLookup:
        """The key for `kid`, fetching the JWKS at most once per cool-down when the kid is
        not known, and waiting for a fetch no longer than its deadline.

        UNKNOWN only when keys fetched at or after `listed_since` (epoch seconds; default:
        now, the arrival of the token being checked) do not list the kid, or a fetch since
        did not within NEGATIVE_KID_SECONDS; UNAVAILABLE when no such keys can be had now."""
        since = time.time() if listed_since is None else listed_since
        self.sync()
        now = time.monotonic()
        with self._lock:
            known = self._judge_locked(kid, since, now)
            if known is not None:
                return known
            fetch = self._start_fetch_locked(now)
        if fetch is None:  # inside the cool-down: wait for keys, do not refuse for our age
            return KeyLookup(KeyStatus.UNAVAILABLE)
        fetch.done.wait(max(0.0, fetch.deadline - time.monotonic()))
        self.sync()
        with self._lock:
            return self._judge_locked(kid, since, time.monotonic()) or KeyLookup(
                KeyStatus.UNAVAILABLE
            )

    def usable(self, *, wait: bool = False) -> bool:
        """Whether keys are usable now (fetched within the stale grace). When they are not,
        starts a fetch (within the cool-down) and, with `wait`, waits for it no longer than
        its deadline."""
        self.sync()
        with self._lock:
            if self._usable_locked():
                return True
            fetch = self._start_fetch_locked(time.monotonic())
        if fetch is None or not wait:
            return False
        fetch.done.wait(max(0.0, fetch.deadline - time.monotonic()))
        self.sync()
        with self._lock:
            return self._usable_locked()

    def health(self) -> tuple[bool, str]:
        usable = self.usable(wait=True)
        with self._lock:
            count, fetched_at = len(self._keys), self._fetched_at
            last_ok, error = self._last_ok, self._last_error
        if fetched_at is None:
            return False, f"no keys fetched yet; last error: {error or 'none'}"
        age = time.time() - fetched_at
        if not usable:
            return False, (
                f"keys are {age / 3600:.1f} h old, beyond the {settings.JWKS_STALE_GRACE_HOURS} h "
                f"grace; last error: {error or 'none'}"
            )
        detail = f"{count} key(s), fetched {int(age)} s ago"
        if last_ok is False:
            detail += f"; identity provider unreachable ({error}), using last-known-good keys"
        return True, detail

    # --- fetching ----------------------------------------------------------------------

    def refresh(self, *, wake_verifier: bool = True) -> bool:
        """Fetch now in this thread (the periodic task); True when the fetch succeeded."""
        download = self._download()
        with self._lock:
            self._next_fetch = time.monotonic() + settings.JWKS_REFETCH_COOLDOWN
        self._complete(download, None, wake_verifier=wake_verifier)
        self.sync()
        return download.ok

    def _start_fetch_locked(self, now: float) -> _Fetch | None:
        """The fetch in flight, a new one, or None inside the cool-down."""
        if self._inflight is not None:
            if now <= self._inflight.deadline + ABANDON_FETCH_SECONDS:
                return self._inflight
            # Its thread hangs past every deadline, or was lost in a fork (a forked child
            # inherits this state but not the thread): stop waiting for it.
            self._inflight = None
        if now < self._next_fetch:
            return None
        self._next_fetch = now + settings.JWKS_REFETCH_COOLDOWN
        fetch = _Fetch(deadline=now + settings.JWKS_FETCH_TIMEOUT)
        self._inflight = fetch
        threading.Thread(
            target=self._fetch_in_background, args=(fetch,), name="jwks-fetch", daemon=True
        ).start()
        return fetch

    def _refresh_ahead_locked(self, now: float) -> None:
        if self._fetched_at is not None and time.time() - self._fetched_at > REFRESH_AHEAD_SECONDS:
            self._start_fetch_locked(now)

    def _fetch_in_background(self, fetch: _Fetch) -> None:
        try:
            self._complete(self._download(), fetch, wake_verifier=True)
        finally:
            fetch.done.set()

    def _download(self) -> _Download:
        try:
            response = http.request(
                "GET",
                self.url,
                timeout=settings.JWKS_FETCH_TIMEOUT,
                headers={"Accept": "application/json"},
                max_bytes=MAX_JWKS_BYTES,
            )
            document = response.json()
            keys = jwks_parse(document, algorithms=settings.JWT_ALGORITHMS)
        except (http.HttpError, JwksError) as exc:
            return _Download(error=str(exc)[:300] or type(exc).__name__)
        except Exception as exc:  # the fetch thread must always report an outcome
            log.exception("jwks: unexpected error while fetching")
            return _Download(error=f"unexpected {type(exc).__name__}")
        return _Download(document=document, keys=keys)

    def _complete(self, download: _Download, fetch: _Fetch | None, *, wake_verifier: bool) -> None:
        at = time.time()
        with self._lock:
            recovered = download.ok and self._last_ok is not True
            if download.ok:
                self._keys = download.keys
                self._fetched_at = at
                self._last_ok, self._last_error = True, ""
                self._unsaved_ok = _Outcome(at, download.document, "", recovered and wake_verifier)
            else:
                self._last_ok, self._last_error = False, download.error
                self._unsaved_error = _Outcome(at, {}, download.error, False)
            if fetch is not None and self._inflight is fetch:
                self._inflight = None
        if download.ok:
            if recovered:
                log.info("jwks: signing keys fetched", extra={"keys": len(download.keys)})
        else:
            log.warning("jwks: fetch failed", extra={"error": download.error})

    # --- the database copy -------------------------------------------------------------

    def sync(self) -> None:
        """Write fetch outcomes not yet saved, and adopt newer keys another process saved
        (at most every DB_SYNC_SECONDS). Call only where the ORM may be used."""
        now = time.monotonic()
        with self._lock:
            saved_ok, self._unsaved_ok = self._unsaved_ok, None
            saved_error, self._unsaved_error = self._unsaved_error, None
            due = now >= self._next_db_sync
            if due:
                self._next_db_sync = now + DB_SYNC_SECONDS
        try:
            if saved_ok is not None:
                self._save(saved_ok)
            if saved_error is not None:
                self._save(saved_error)
            if due:
                self._load()
        except DatabaseError:
            log.warning("jwks: database unavailable; using the keys in memory")

    def _save(self, outcome: _Outcome) -> None:
        at = datetime.fromtimestamp(outcome.at, UTC)
        with transaction.atomic():
            state, _ = JwksState.objects.get_or_create(url=self.url)
            rows = JwksState.objects.filter(pk=state.pk)
            if outcome.error:
                rows.update(last_attempt_at=at, last_error=outcome.error[:500])
            else:
                # Another process may have saved a newer copy meanwhile; keep the newest.
                rows.filter(Q(fetched_at__isnull=True) | Q(fetched_at__lte=at)).update(
                    jwks=outcome.document, fetched_at=at, last_attempt_at=at, last_error=""
                )
        if outcome.recovered:
            keys_recovered.send(sender=KeySource)

    def _load(self) -> None:
        row = JwksState.objects.filter(url=self.url, fetched_at__isnull=False).first()
        if row is None or row.fetched_at is None:
            return
        fetched_at = row.fetched_at.timestamp()
        with self._lock:
            if self._fetched_at is not None and self._fetched_at >= fetched_at:
                return
        try:
            keys = jwks_parse(row.jwks, algorithms=settings.JWT_ALGORITHMS)
        except JwksError:
            log.warning("jwks: the stored copy has no usable key for the pinned algorithms")
            return
        with self._lock:
            if self._fetched_at is None or self._fetched_at < fetched_at:
                self._keys, self._fetched_at = keys, fetched_at

    # --- helpers (caller holds the lock) -----------------------------------------------

    def _usable_locked(self) -> bool:
        # Host clocks are compared with the fetch time of another host here; a skew of
        # seconds is irrelevant against a grace counted in hours.
        if not self._keys or self._fetched_at is None:
            return False
        return time.time() - self._fetched_at <= settings.JWKS_STALE_GRACE_HOURS * 3600

    def _judge_locked(self, kid: str, since: float, now: float) -> KeyLookup | None:
        """FOUND or UNKNOWN when the keys in memory settle it, else None."""
        key = self._key_locked(kid)
        if key is not None:
            self._refresh_ahead_locked(now)
            return KeyLookup(KeyStatus.FOUND, key)
        if not self._usable_locked():
            return None
        if self._unknown.get(kid, 0.0) > now:
            return KeyLookup(KeyStatus.UNKNOWN)
        if self._fetched_at is not None and self._fetched_at >= since:
            # Keys fetched since the token arrived do not list its kid.
            self._remember_unknown_locked(kid)
            return KeyLookup(KeyStatus.UNKNOWN)
        return None

    def _key_locked(self, kid: str) -> SigningKey | None:
        return self._keys.get(kid) if self._usable_locked() else None

    def _remember_unknown_locked(self, kid: str) -> None:
        if len(self._unknown) >= NEGATIVE_KID_MAX:
            now = time.monotonic()
            self._unknown = {k: v for k, v in self._unknown.items() if v > now}
            if len(self._unknown) >= NEGATIVE_KID_MAX:
                self._unknown.clear()
        self._unknown[kid] = time.monotonic() + NEGATIVE_KID_SECONDS


_source_lock = threading.Lock()
_source: KeySource | None = None


def key_source() -> KeySource:
    """This process's key source for the configured JWKS_URL."""
    global _source
    with _source_lock:
        if _source is None or _source.url != settings.JWKS_URL:
            _source = KeySource(settings.JWKS_URL)
        return _source


def key_source_forget() -> None:
    """Drop this process's keys and counters (tests; a fetch in flight is discarded)."""
    global _source
    with _source_lock:
        _source = None


def jwks_refresh() -> bool:
    """Periodic task: fetch the JWKS and save it as last-known-good."""
    if not settings.JWKS_URL:
        return False
    return key_source().refresh()


def jwks_health() -> tuple[bool, str]:
    """For /health: ok when no JWKS is configured or its keys are usable."""
    if not settings.JWKS_URL:
        return True, "not configured"
    return key_source().health()


def keys_usable() -> bool:
    """Whether identity-provider tokens can be verified now (False: they are received into
    `auth_pending`). Starts a fetch when none is usable, within the cool-down."""
    return bool(settings.JWKS_URL) and key_source().usable()
