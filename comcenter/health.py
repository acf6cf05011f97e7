"""Dependency checks behind `/health` and the canary.

Each check is a small probe with a short timeout; the checks of one report run in parallel
threads with an overall deadline, so a hung dependency makes one check "timed out" instead of
making `/health` hang. A report is cached for `HEALTH_CACHE_SECONDS` per process, so a
load balancer polling every second costs a few probes per cache period, not per request.

What is checked (only what is configured):

- `database`: `SELECT 1` on the default connection.
- `broker`: django-q2's broker `ping()` (the Redis broker, with short socket timeouts); the
  ORM broker's ping is a no-op, so for it the queue table is counted instead.
- `cache`: a set/get/delete round trip of a throwaway key.
- `jwks`: only when `JWKS_URL` is set; `identity.jwks.jwks_health()`.
- `provider:<channel>`: each provider of the registry. The rule for an unconfigured provider:
  while `DISABLE_SEND` is on (dry run, the default) nothing is sent, so an unconfigured
  provider is reported (`"configured": false`) but is not a failure; once sending is live it
  is a failure, because every message on its channel would go to the dead-letter queue.
  A configured provider is always probed, in dry run too, so operators see it is reachable
  before they switch sending on.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections

from delivery.providers.registry import all_providers
from flags.services import flag_is_on
from identity.jwks import jwks_health


@dataclass(frozen=True)
class Check:
    """One dependency's state. `ok` is what counts towards readiness."""

    ok: bool
    detail: str = ""
    ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


@dataclass(frozen=True)
class HealthReport:
    checks: dict[str, Check]
    checked_at: float

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "fail",
            "checks": {name: check.as_json() for name, check in self.checks.items()},
            "age_seconds": round(max(0.0, time.monotonic() - self.checked_at), 1),
        }


def _safe_detail(exc: BaseException) -> str:
    # Exception texts of drivers can carry URLs with credentials; the type says enough.
    return f"{type(exc).__name__}"


def check_database() -> Check:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return Check(ok=True, detail=connection.vendor)


def check_broker() -> Check:
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    broker = get_broker()
    if Conf.ORM:
        size = broker.queue_size()
        return Check(ok=True, detail=f"orm broker, {size} queued")
    if Conf.REDIS:
        import redis

        # django-q2 builds its Redis client without timeouts; a probe must not hang.
        timeout = settings.HEALTH_CHECK_TIMEOUT
        url = Conf.REDIS if isinstance(Conf.REDIS, str) else None
        if url:
            broker.connection = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
    ok = bool(broker.ping())
    return Check(ok=ok, detail=broker.info() if ok else "ping failed")


_CACHE_PROBE_KEY = "health:probe"


def check_cache() -> Check:
    token = f"{time.time_ns()}"
    cache.set(_CACHE_PROBE_KEY, token, timeout=10)
    ok = cache.get(_CACHE_PROBE_KEY) == token
    return Check(
        ok=ok,
        detail=("shared (redis)" if settings.CACHE_IS_SHARED else "local memory")
        if ok
        else "value written was not read back",
    )


def check_jwks() -> Check:
    ok, detail = jwks_health()
    return Check(ok=bool(ok), detail=detail)


def _send_disabled() -> bool:
    return bool(flag_is_on("DISABLE_SEND"))


def provider_check(provider: Any, *, send_disabled: bool) -> Check:
    """A provider's check under the rule of the module docstring."""
    name = provider.name
    if not provider.is_configured():
        if send_disabled:
            return Check(
                ok=True,
                detail="not configured; not required while DISABLE_SEND is on (dry run)",
                extra={"provider": name, "configured": False, "required": False},
            )
        return Check(
            ok=False,
            detail="not configured while sending is live: its messages would be dead-lettered",
            extra={"provider": name, "configured": False, "required": True},
        )
    result = provider.health()
    return Check(
        ok=bool(result.ok),
        detail=str(result.detail),
        extra={"provider": name, "configured": True, "required": True},
    )


def _provider_checks() -> dict[str, Callable[[], Check]]:
    try:
        send_disabled = _send_disabled()
    except Exception:
        # Flags unreadable (database down): judge providers as if sending were live, the
        # stricter reading; the database check reports the cause.
        send_disabled = False
    return {
        f"provider:{provider.channel}": functools.partial(
            provider_check, provider, send_disabled=send_disabled
        )
        for provider in all_providers()
    }


def _timed(probe: Callable[[], Check]) -> Check:
    started = time.perf_counter()
    try:
        result = probe()
    except Exception as exc:  # a probe failing in any way is a failed check, not a 500
        result = Check(ok=False, detail=_safe_detail(exc))
    finally:
        # Each probe thread opened its own database connection (Django's are per thread);
        # close it so probes never leak connections.
        connections.close_all()
    ms = round((time.perf_counter() - started) * 1000, 1)
    return Check(ok=result.ok, detail=result.detail, ms=ms, extra=result.extra)


def registered_checks() -> dict[str, Callable[[], Check]]:
    """Every check that applies to this deployment's configuration."""
    checks: dict[str, Callable[[], Check]] = {
        "database": check_database,
        "broker": check_broker,
        "cache": check_cache,
    }
    if settings.JWKS_URL:
        checks["jwks"] = check_jwks
    try:
        checks.update(_provider_checks())
    except Exception as exc:
        detail = _safe_detail(exc)
        checks["providers"] = lambda: Check(ok=False, detail=f"registry: {detail}")
    return checks


# A small pool shared by all reports of the process; a hung probe holds one thread until its
# own timeout, and the report does not wait for it.
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")
_lock = threading.Lock()
_cached: HealthReport | None = None


def run_checks() -> HealthReport:
    """Run every check now, in parallel, within HEALTH_CHECK_TIMEOUT (plus a little)."""
    checks = registered_checks()
    futures = {name: _pool.submit(_timed, probe) for name, probe in checks.items()}
    deadline = time.monotonic() + settings.HEALTH_CHECK_TIMEOUT + 0.5
    results: dict[str, Check] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            results[name] = Check(
                ok=False,
                detail=f"timed out after {settings.HEALTH_CHECK_TIMEOUT}s",
                ms=settings.HEALTH_CHECK_TIMEOUT * 1000,
            )
    return HealthReport(checks=results, checked_at=time.monotonic())


def health_report(*, max_age: float | None = None) -> HealthReport:
    """The cached report, refreshed when older than `max_age` (default HEALTH_CACHE_SECONDS).

    One refresh at a time per process: concurrent callers wait for it rather than stampede
    the dependencies."""
    global _cached
    limit = settings.HEALTH_CACHE_SECONDS if max_age is None else max_age
    with _lock:
        if _cached is not None and time.monotonic() - _cached.checked_at < limit:
            return _cached
        _cached = run_checks()
        return _cached


def health_forget() -> None:
    """Drop the cached report (tests; a setting change)."""
    global _cached
    with _lock:
        _cached = None
