"""The post-publish checklist of the old system, run against a deployment (SPEC §14 `evidence`).

Every check ends GREEN, DEGRADED (working, with a reason, e.g. the identity provider is
pending) or RED (broken), with its detail and how long it took:

1. `canary`: `/canary` answers exactly its eight fields, this code's version, a status;
2. `security_headers`: the five headers on every response, HSTS judged only over HTTPS;
3. `latency_p95`: P95 of 30 sampled requests (`/health/live`) <= ACK_P95_SLO_MS;
4. `jwks`: the identity provider's keys usable (DEGRADED while receive-and-queue holds);
5. `token`: the client-credentials flow issues a token (needs --client-id/--client-secret);
6. `synthetic_events`: a `deadline_soon` and a `new_match` event accepted and every message
   rendered in dry run, none sent (only while the canary's mode is `dry_run`);
7. `provider_health`: every provider's check in `/health`;
8. `kill_switch`: dry run confirmed, and a flag change observed on the deployment within
   EVIDENCE_WAIT_SECONDS: DISPATCH_PAUSED is turned on, a probe event's messages are seen
   `held`, then it is turned back off and they are seen `dry_run`.

The command never lowers a safety flag: the kill-switch check only ever turns DISPATCH_PAUSED
on and back off when it found it off (if it is on already, the check is DEGRADED and nothing
is touched), and it sends nothing unless the deployment is in dry run. Flag changes go
through `flag_set` in the deployment's database (the command runs with its settings),
audited as actor `evidence`; everything else goes over HTTP to `--url`, as a client would.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from comcenter.lib import http
from comcenter.lib.latency import percentile

GREEN, DEGRADED, RED = "GREEN", "DEGRADED", "RED"
CANARY_FIELDS = {
    "app",
    "version",
    "build",
    "status",
    "mode",
    "p95_ms",
    "security_headers",
    "dependencies_ok",
}
ALWAYS_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Permissions-Policy",
)
LATENCY_SAMPLES = 30
EVIDENCE_WAIT_SECONDS = 60.0
SYNTHETIC_TYPES = ("deadline_soon", "new_match")
ACTOR = "evidence"
_TIMEOUT = 10.0
_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str
    detail: str
    ms: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class _Skip(Exception):
    """A check that cannot run here: DEGRADED with the reason."""


class _Fail(Exception):
    """A check that failed: RED with the reason."""


def _synthetic(event_type: str, key: str) -> dict[str, Any]:
    # Reserved example address and number (RFC 2606, NANP 555-01xx): nothing reachable.
    return {
        "event_type": event_type,
        "idempotency_key": key,
        "recipient": {
            "id": "evidence-probe",
            "email": "evidence@example.org",
            "phone": "+12025550100",
            "locale": "en",
        },
        "data": {"scholarship": "Evidence Probe", "deadline": "2026-12-31"},
    }


class EvidenceRun:
    """One run of the checklist; `run()` returns the summary and writes nothing itself."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str = "",
        client_secret: str = "",
        wait_seconds: float = EVIDENCE_WAIT_SECONDS,
        echo: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.wait_seconds = wait_seconds
        self.echo = echo
        self.run_id = uuid.uuid4().hex[:12]
        self.session = http.session_new()
        self.canary: dict[str, Any] | None = None
        self.canary_headers: dict[str, str] = {}
        self.health: dict[str, Any] | None = None
        self.token = ""
        self.lines: list[str] = []

    # --- plumbing --------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> http.HttpResponse:
        return http.request(
            method, f"{self.url}{path}", timeout=_TIMEOUT, session=self.session, **kwargs
        )

    def _bearer(self) -> dict[str, str]:
        if not self.token:
            raise _Skip("no access token (the token check did not pass)")
        return {"Authorization": f"Bearer {self.token}"}

    def _health(self) -> dict[str, Any]:
        if self.health is None:
            try:
                self.health = self._call("GET", "/health").json()
            except http.HttpError as exc:
                if exc.status != 503:  # 503 still carries the report
                    raise _Fail(f"/health: {exc.message}") from None
                self.health = json.loads(exc.body or b"{}")
        return self.health

    def _mode(self) -> str:
        return str((self.canary or {}).get("mode", ""))

    # --- the checks --------------------------------------------------------------------------

    def check_canary(self) -> tuple[str, str]:
        try:
            response = self._call("GET", "/canary")
        except http.HttpError as exc:
            raise _Fail(f"/canary: {exc.message}") from None
        self.canary_headers = {name.lower(): value for name, value in response.headers.items()}
        data = response.json()
        self.canary = data if isinstance(data, dict) else {}
        fields = set(self.canary)
        if fields != CANARY_FIELDS:
            extra, missing = sorted(fields - CANARY_FIELDS), sorted(CANARY_FIELDS - fields)
            raise _Fail(f"fields differ: missing {missing}, unexpected {extra}")
        version = self.canary["version"]
        if version != settings.APP_VERSION:
            raise _Fail(f"version {version!r} deployed, {settings.APP_VERSION!r} expected")
        status = self.canary["status"]
        detail = (
            f"version {version} build {self.canary['build']}, status {status}, mode {self._mode()}"
        )
        if status == "down":
            raise _Fail(detail)
        return (DEGRADED if status == "degraded" else GREEN), detail

    def check_security_headers(self) -> tuple[str, str]:
        if self.canary is None:
            raise _Fail("no canary answer to read the headers from")
        https = self.url.startswith("https://")
        required = ALWAYS_HEADERS + (("Strict-Transport-Security",) if https else ())
        missing = [name for name in required if name.lower() not in self.canary_headers]
        if missing:
            raise _Fail(f"missing: {', '.join(missing)}")
        hsts = "HSTS present" if https else "HSTS not judged over plain HTTP"
        return GREEN, f"{len(required)} present; {hsts}"

    def check_latency_p95(self) -> tuple[str, str]:
        samples = []
        for _ in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            try:
                self._call("GET", "/health/live")
            except http.HttpError as exc:
                raise _Fail(f"/health/live: {exc.message}") from None
            samples.append((time.perf_counter() - started) * 1000)
        p95 = percentile(samples, 0.95) or 0.0
        limit = float(settings.ACK_P95_SLO_MS)
        detail = f"P95 {p95:.1f} ms of {LATENCY_SAMPLES} requests (limit {limit:g} ms)"
        if p95 > limit:
            raise _Fail(detail)
        return GREEN, detail

    def check_jwks(self) -> tuple[str, str]:
        jwks = self._health().get("checks", {}).get("jwks")
        if jwks is None:
            return GREEN, "no identity provider configured (JWKS_URL unset)"
        if jwks.get("ok"):
            return GREEN, f"keys usable: {jwks.get('detail', '')}"
        return DEGRADED, (
            f"identity provider pending ({jwks.get('detail', '')}): its callers' events are "
            "received into auth_pending and verified when the keys can be fetched"
        )

    def check_token(self) -> tuple[str, str]:
        if not (self.client_id and self.client_secret):
            raise _Skip("skipped: no --client-id/--client-secret given")
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        try:
            data = self._call("POST", "/api/v1/auth/token", data=form).json()
        except http.HttpError as exc:
            raise _Fail(f"token endpoint: {exc.message}") from None
        if data.get("token_type") != "Bearer" or not data.get("access_token"):
            raise _Fail("the answer carries no bearer token")
        self.token = str(data["access_token"])
        return GREEN, f"bearer token issued, scope {data.get('scope', '')!r}"

    def _post_event(self, event_type: str, key: str) -> str:
        headers = {**self._bearer(), "Content-Type": "application/json"}
        body = json.dumps(_synthetic(event_type, key)).encode()
        try:
            data = self._call("POST", "/api/v1/events", data=body, headers=headers).json()
        except http.HttpError as exc:
            raise _Fail(f"{event_type} not accepted: {exc.message}") from None
        return str(data["id"])

    def _messages(self, event_id: str) -> list[dict[str, Any]]:
        try:
            data = self._call("GET", f"/api/v1/events/{event_id}", headers=self._bearer()).json()
        except http.HttpError as exc:
            raise _Fail(f"event {event_id}: {exc.message}") from None
        return list(data.get("messages") or [])

    def _wait_states(self, event_id: str, allowed: set[str], needed: str) -> list[dict[str, Any]]:
        """The event's messages once each is in `allowed` and one is `needed`; _Fail if one
        is sent, or on the deadline."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            messages = self._messages(event_id)
            states = {m["state"] for m in messages}
            if needed in states and states <= allowed:
                return messages
            if "sent" in states:
                raise _Fail(f"event {event_id}: a message was SENT (states {sorted(states)})")
            if time.monotonic() > deadline:
                raise _Fail(
                    f"event {event_id}: messages {sorted(states) or 'none'} after "
                    f"{self.wait_seconds:g} s, {needed} expected"
                )
            time.sleep(_POLL_SECONDS)

    def check_synthetic_events(self) -> tuple[str, str]:
        self._bearer()
        if self._mode() != "dry_run":
            raise _Skip(f"skipped: the deployment's mode is {self._mode()!r}, not dry_run")
        found = []
        for event_type in SYNTHETIC_TYPES:
            event_id = self._post_event(event_type, f"evidence-{self.run_id}-{event_type}")
            messages = self._wait_states(event_id, {"dry_run"}, "dry_run")
            channels = ",".join(sorted(m["channel"] for m in messages))
            found.append(f"{event_type}: {len(messages)} dry_run ({channels})")
        return GREEN, "; ".join(found) + "; nothing sent"

    def check_provider_health(self) -> tuple[str, str]:
        checks = self._health().get("checks", {})
        providers = {name: c for name, c in checks.items() if name.startswith("provider")}
        if not providers:
            raise _Fail("/health lists no provider")
        shown = "; ".join(
            f"{name} {'ok' if c.get('ok') else 'FAIL'}: {c.get('detail', '')}"
            for name, c in sorted(providers.items())
        )
        if not all(c.get("ok") for c in providers.values()):
            raise _Fail(shown)
        return GREEN, shown

    def check_kill_switch(self) -> tuple[str, str]:
        from flags.models import FlagSource
        from flags.services import flag_set, flag_states

        if self._mode() != "dry_run":
            raise _Fail(f"dry run not confirmed: the canary's mode is {self._mode()!r}")
        self._bearer()
        paused = next(s for s in flag_states() if s.name == "DISPATCH_PAUSED")
        if paused.effective:
            raise _Skip("dry run confirmed; DISPATCH_PAUSED is on already, so it was not toggled")
        reason = f"evidence run {self.run_id}: kill-switch check, turned back off at once"
        flag_set(
            name="DISPATCH_PAUSED",
            value=True,
            actor=ACTOR,
            reason=reason,
            source=FlagSource.COMMAND,
        )
        started = time.monotonic()
        try:
            # Every node reads flags through a cache of FLAG_CACHE_SECONDS (this command runs
            # with the deployment's settings): a probe sent sooner could be dispatched by a
            # worker that has not seen the pause yet.
            time.sleep(settings.FLAG_CACHE_SECONDS)
            event_id = self._post_event("new_match", f"evidence-{self.run_id}-paused")
            # Held at the gate; a later message of the same recipient waits behind it
            # (per-key order), still pending: both show that nothing is dispatched.
            self._wait_states(event_id, {"held", "pending"}, "held")
            seen_on = time.monotonic() - started
        finally:
            flag_set(
                name="DISPATCH_PAUSED",
                value=False,
                actor=ACTOR,
                reason=reason,
                source=FlagSource.COMMAND,
            )
        lifted = time.monotonic()
        self._wait_states(event_id, {"dry_run"}, "dry_run")
        seen_off = time.monotonic() - lifted
        return GREEN, (
            f"dry run confirmed; DISPATCH_PAUSED on seen as held after {seen_on:.1f} s, "
            f"off seen as dry_run after {seen_off:.1f} s (limit {self.wait_seconds:g} s)"
        )

    # --- the run -----------------------------------------------------------------------------

    CHECKS = (
        "canary",
        "security_headers",
        "latency_p95",
        "jwks",
        "token",
        "synthetic_events",
        "provider_health",
        "kill_switch",
    )

    def _one(self, name: str) -> CheckResult:
        started = time.perf_counter()
        try:
            status, detail = getattr(self, f"check_{name}")()
        except _Skip as exc:
            status, detail = DEGRADED, str(exc)
        except _Fail as exc:
            status, detail = RED, str(exc)
        except Exception as exc:  # a check that crashes is a failed check, never a crash
            status, detail = RED, f"check failed: {type(exc).__name__}"
        ms = round((time.perf_counter() - started) * 1000, 1)
        result = CheckResult(name, status, detail, ms)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        line = f"{at} {status:<8} {name} ({ms} ms): {detail}"
        self.lines.append(line)
        self.echo(line)
        return result

    def run(self) -> dict[str, Any]:
        try:
            results = [self._one(name) for name in self.CHECKS]
        finally:
            self.session.close()
        statuses = {result.status for result in results}
        overall = RED if RED in statuses else DEGRADED if DEGRADED in statuses else GREEN
        self.lines.append(f"overall {overall} ({self.url}, run {self.run_id})")
        self.echo(self.lines[-1])
        return {"overall": overall, "checks": [result.as_json() for result in results]}


def evidence_write(*, out: Path, summary: dict[str, Any], lines: list[str]) -> list[Path]:
    """`evidence.log`, `summary.json` and `MANIFEST.sha256` (sha256sum's format) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "evidence.log": "\n".join(lines) + "\n",
        "summary.json": json.dumps(summary, indent=2) + "\n",
    }
    written = []
    manifest = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        manifest.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}")
        written.append(path)
    (out / "MANIFEST.sha256").write_text("\n".join(manifest) + "\n", encoding="utf-8")
    return [*written, out / "MANIFEST.sha256"]
