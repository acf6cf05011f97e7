"""Settings for comcenter, read from the environment (and `.env` if present) through
django-environ only. Every variable is documented in `.env.example`. A bad value fails at
start-up with ImproperlyConfigured naming the variable."""

from __future__ import annotations

import os
import re
import secrets
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# The dotenv file: ENV_FILE names it (default `.env` here; empty: none). Under the test runner
# the developer's .env is ignored, in every process a test starts too (they inherit
# ENV_FILE=""), and a throwaway key is generated, so tests see the documented defaults only.
TESTING = "pytest" in sys.modules
if TESTING:
    os.environ["ENV_FILE"] = ""
    # The warning-repeat markers of one test run (and of the processes its tests start),
    # never those of a developer's server or of an earlier run.
    os.environ.setdefault("LOG_REPEAT_DIR", tempfile.mkdtemp(prefix="comcenter-test-logs-"))
env = environ.Env()
_env_file_name = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if _env_file_name and Path(_env_file_name).exists():
    environ.Env.read_env(_env_file_name, overwrite=False)


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    """An integer setting; a non-integer or a value below `minimum` names the variable."""
    try:
        value = env.int(name, default=default)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{name} must be an integer (got {env.str(name)!r})") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum} (got {value})")
    return value


def _float(name: str, default: float, *, minimum: float = 0.0) -> float:
    try:
        value = env.float(name, default=default)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{name} must be a number (got {env.str(name)!r})") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum} (got {value})")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (got {raw!r})")


def _url(name: str, default: str = "") -> str:
    value = env.str(name, default=default).strip()
    if value and not urlsplit(value).scheme:
        raise ImproperlyConfigured(f"{name} must be a URL (got {value!r})")
    return value


# --- core -------------------------------------------------------------------------------
try:
    SECRET_KEY = (
        env.str("SECRET_KEY") if not TESTING else env.str("SECRET_KEY", secrets.token_urlsafe(50))
    )
except ImproperlyConfigured as exc:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: put it in the environment or .env (`make run` writes one)"
    ) from exc
if len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters")
# Signs the audit chain's seals (HMAC-SHA256). Every process that seals or verifies needs it;
# keep it apart from SECRET_KEY. Under the test runner a throwaway key is generated and
# exported, so the processes a test starts seal with the same key.
if TESTING and not os.environ.get("AUDIT_KEY"):
    os.environ["AUDIT_KEY"] = secrets.token_urlsafe(40)
AUDIT_KEY = env.str("AUDIT_KEY", default="")
if len(AUDIT_KEY) < 32:
    raise ImproperlyConfigured(
        "AUDIT_KEY must be set to at least 32 characters (`make run` writes one to .env)"
    )

DEBUG = _bool("DEBUG", False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PORT = _int("PORT", 8000, minimum=1)
APP_VERSION = "0.1.0"
# Shown in the admin's header, so no one mistakes production for staging.
ENVIRONMENT_NAME = env.str("ENVIRONMENT_NAME", default="local")
# How often the dashboard fetches its figures again, in place (console/dashboard.js).
DASHBOARD_REFRESH_SECONDS = _int("DASHBOARD_REFRESH_SECONDS", 15, minimum=1)
BUILD = env.str("BUILD", default="dev")

INSTALLED_APPS = [
    # First: the console's templates override the admin's (dashboard, header, banners).
    "console",
    "console.apps.ConsoleAdminConfig",  # django.contrib.admin with the console's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "django_prometheus",
    "comcenter",
    "audit",
    "flags",
    "templates",
    "identity",
    "events",
    "delivery",
    "guard",
    "support",
]

MIDDLEWARE = [
    # First and last: django-prometheus times the whole chain and labels requests by view.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "comcenter.middleware.RequestIdMiddleware",
    # Inside the request id, outside everything else: it sees every final status code.
    "guard.middleware.MeasurementMiddleware",
    "comcenter.middleware.SecurityHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "comcenter.urls"
WSGI_APPLICATION = "comcenter.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'comcenter.sqlite3'}")
try:
    _db = environ.Env.db_url_config(DATABASE_URL)
except Exception as exc:  # django-environ raises several types for a malformed URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Embedded default: WAL so readers never block the writer, IMMEDIATE so a write
    # transaction takes the lock up front (no deadlock-prone lock upgrades), and a long busy
    # timeout so bursts wait instead of failing with "database is locked".
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so tests can start real worker processes against it.
    _db["TEST"] = {"NAME": env.str("SQLITE_TEST_NAME", default=str(BASE_DIR / "test.sqlite3"))}
elif _db["ENGINE"] in {"django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"}:
    _db["ENGINE"] = "django.db.backends.postgresql"
    _db["CONN_MAX_AGE"] = _int("DB_CONN_MAX_AGE", 60)
    # Off by default: the check is a SELECT 1 round trip at the start of every request, a
    # seventh of the ack path's time. The cost of leaving it off: after a database restart,
    # each web process fails one request (a 5xx, safe to retry with the same idempotency
    # key) and then reconnects.
    _db["CONN_HEALTH_CHECKS"] = _bool("DB_CONN_HEALTH_CHECKS", False)
    # An unreachable server fails a request (and the /health probe) quickly, not after the
    # operating system's TCP timeout.
    _db["OPTIONS"] = {"connect_timeout": _int("DB_CONNECT_TIMEOUT", 5, minimum=1)}
else:
    raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL")
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = _db["ENGINE"] == "django.db.backends.postgresql"

# --- cache and broker -------------------------------------------------------------------
REDIS_URL = _url("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "comcenter.lib.cache.PooledRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "comcenter",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# True when every process sees the same cache (Redis); the wake-up coalescing relies on it.
CACHE_IS_SHARED = bool(REDIS_URL)

Q_WORKERS = _int("Q_WORKERS", 2, minimum=1)
# django-q2 only runs code and wakes workers; our tables hold every state. `retry` must exceed
# `timeout` plus queue wait or a task runs twice; `queue_limit` stays near the worker count
# and `bulk` at 1 so leases start close to execution (django-q2 #298, #303).
Q_CLUSTER = {
    "name": "comcenter",
    "workers": Q_WORKERS,
    "timeout": 120,
    "retry": 180,
    "max_attempts": 1,
    "queue_limit": Q_WORKERS,
    "bulk": 1,
    "catch_up": False,
    # Success rows would cost the monitor a write (and a prune) per task; our own tables
    # record every outcome, so django-q2 keeps failures only.
    "save_limit": -1,
    "ack_failures": True,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- auth, API --------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

ACCESS_TOKEN_TTL = _int("ACCESS_TOKEN_TTL", 900, minimum=60)
SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
    "ISSUER": "comcenter",
    "AUDIENCE": "comcenter",
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=ACCESS_TOKEN_TTL),
    "USER_ID_CLAIM": "sub",
    "USER_ID_FIELD": "client_id",
    "LEEWAY": 0,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["identity.auth.BearerAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "comcenter.lib.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_RATES": {
        "intake": env.str("THROTTLE_INTAKE", default="6000/min"),
        "token": env.str("THROTTLE_TOKEN", default="60/min"),
        "webhook": env.str("THROTTLE_WEBHOOK", default="6000/min"),
        "suppressions": env.str("THROTTLE_SUPPRESSIONS", default="6000/min"),
        "feedback": env.str("THROTTLE_FEEDBACK", default="6000/min"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "comcenter API",
    "DESCRIPTION": "Event intake and delivery status for transactional email and SMS.",
    "VERSION": APP_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and its favicon from our own static files (drf-spectacular-sidecar), so the
    # strict Content-Security-Policy (script-src 'self') holds on /api/docs/ too.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The ops views are plain Django views, which drf-spectacular does not enumerate.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "comcenter.ops_schema.add_ops_paths",
    ],
}

# --- intake -----------------------------------------------------------------------------
MAX_EVENT_BYTES = _int("MAX_EVENT_BYTES", 65536, minimum=1024)
# Django refuses bodies above this before our view sees them; the admin needs a little more
# room than an event (template bodies), and the intake view enforces MAX_EVENT_BYTES itself.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(MAX_EVENT_BYTES, 512 * 1024)
ORDERING_GAP_WAIT = _float("ORDERING_GAP_WAIT", 10.0)
# The consumer of the outbox, by dotted path, so `events` never imports `delivery`.
OUTBOX_CONSUMER = "delivery.tasks.pump"
OUTBOX_SWEEP_AFTER_SECONDS = _int("OUTBOX_SWEEP_AFTER_SECONDS", 30, minimum=1)
# After a pass that found work but no backlog, the consumer waits this long before the next,
# so that what arrives meanwhile is taken in one batch: each batch costs a few statements
# whatever its size: at 250 events/s, 1 s makes batches of ~250 events, and the workers'
# and database's CPU per event were 0.23 ms lower at 0.5 s than at 0.2 s, and 1 s together
# with the ticker's slower cadence beside a consumer (delivery/tasks.py) took another 0.1 ms
# (bench/NOTES.md). An event that arrives alone is taken at once (the
# first pass does not wait), and so is a backlog (no wait after a full pass); under a steady
# stream it adds at most this much to a message's delivery time.
OUTBOX_GATHER_SECONDS = _float("OUTBOX_GATHER_SECONDS", 1.0)
if not 0 <= OUTBOX_GATHER_SECONDS <= 5:
    raise ImproperlyConfigured("OUTBOX_GATHER_SECONDS must be between 0 and 5")
# A process wakes the consumer at most once per this many seconds, for all its commits since
# the last wake (events/handoff.py); 0: one wake per commit, on the committing thread. 0.05 s
# is a twentieth of the consumer's own wait between passes (OUTBOX_GATHER_SECONDS, 1 s), and a
# wake is only held back while one from the same process is at most this old. Tests default
# to 0 so that the enqueue follows the commit; the ones about coalescing set it.
OUTBOX_WAKE_COALESCE_SECONDS = _float("OUTBOX_WAKE_COALESCE_SECONDS", 0.0 if TESTING else 0.05)
if OUTBOX_WAKE_COALESCE_SECONDS > 1:
    raise ImproperlyConfigured("OUTBOX_WAKE_COALESCE_SECONDS must be <= 1")

# --- external identity and webhooks -----------------------------------------------------
JWKS_URL = _url("JWKS_URL")
JWT_ISSUER = env.str("JWT_ISSUER", default="")
JWT_AUDIENCE = env.str("JWT_AUDIENCE", default="")
JWT_REQUIRED_ROLE = env.str("JWT_REQUIRED_ROLE", default="SystemService")
JWT_ALGORITHMS = env.list("JWT_ALGORITHMS", default=["RS256"])
JWT_LEEWAY = _int("JWT_LEEWAY", 30)
JWKS_REFETCH_COOLDOWN = _float("JWKS_REFETCH_COOLDOWN", 10.0)
JWKS_FETCH_TIMEOUT = _float("JWKS_FETCH_TIMEOUT", 2.0, minimum=0.1)
if JWKS_FETCH_TIMEOUT > 3:
    raise ImproperlyConfigured("JWKS_FETCH_TIMEOUT must be <= 3 (seconds a request may wait)")
JWKS_STALE_GRACE_HOURS = _int("JWKS_STALE_GRACE_HOURS", 24, minimum=1)
AUTH_PENDING_MAX_PER_ISSUER = _int("AUTH_PENDING_MAX_PER_ISSUER", 10000, minimum=1)
if JWKS_URL and not (JWT_ISSUER and JWT_AUDIENCE):
    raise ImproperlyConfigured("JWKS_URL is set, so JWT_ISSUER and JWT_AUDIENCE must be set too")
if not JWT_ALGORITHMS or not set(JWT_ALGORITHMS) <= {"RS256", "ES256"}:
    raise ImproperlyConfigured("JWT_ALGORITHMS must name RS256, ES256 or both")

WEBHOOK_SECRETS_RAW = env.str("WEBHOOK_SECRETS", default="")
WEBHOOK_TOLERANCE_SECONDS = 300

TRUST_PROXY_HEADERS = _bool("TRUST_PROXY_HEADERS", True)
if TRUST_PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- operations: metrics, health, canary (comcenter/ops.py) -----------------------------
# Set by the launcher and the gunicorn config before prometheus_client is imported; every
# process (web workers, the django-q2 cluster) writes its metrics there and /metrics sums them.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} is not an existing directory"
    )
HEALTH_CACHE_SECONDS = _float("HEALTH_CACHE_SECONDS", 5.0)
HEALTH_CHECK_TIMEOUT = _float("HEALTH_CHECK_TIMEOUT", 2.0, minimum=0.1)
# The canary's p95_ms covers the last CANARY_P95_WINDOW acks, and is null below 30 of them.
CANARY_P95_WINDOW = _int("CANARY_P95_WINDOW", 200, minimum=30)
if CANARY_P95_WINDOW > 10_000:
    raise ImproperlyConfigured("CANARY_P95_WINDOW must be <= 10000")
CANARY_P95_MIN_SAMPLES = 30
# The canary says "degraded" above this recent P95 ack latency.
ACK_P95_SLO_MS = _float("ACK_P95_SLO_MS", 120.0, minimum=1.0)

# --- delivery ---------------------------------------------------------------------------
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    try:
        vars().update(environ.Env.email_url_config(EMAIL_URL))
    except Exception as exc:
        raise ImproperlyConfigured(f"EMAIL_URL is not a valid email URL: {exc}") from exc
else:
    # No transport configured: the email provider reports itself unconfigured (health,
    # dead-letter with a clear error) instead of pretending to send.
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
EMAIL_TIMEOUT = _int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="comcenter@localhost")
# An ESP through django-anymail instead of SMTP, configured from the environment like every
# secret: EMAIL_BACKEND=anymail.backends.postmark.EmailBackend plus
# ANYMAIL_POSTMARK_SERVER_TOKEN=... (each ANYMAIL_<NAME> variable becomes ANYMAIL["<NAME>"]).
if env.str("EMAIL_BACKEND", default=""):
    if EMAIL_URL:
        raise ImproperlyConfigured("set EMAIL_URL (SMTP) or EMAIL_BACKEND (an ESP), not both")
    EMAIL_BACKEND = env.str("EMAIL_BACKEND")
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): value
    for name, value in os.environ.items()
    if name.startswith("ANYMAIL_")
}

# Provider feedback (delivery/feedback.py). A soft bounce suppresses its address once
# SOFT_BOUNCE_LIMIT of them arrived within SOFT_BOUNCE_WINDOW_DAYS; a receipt that arrived
# before its send was recorded waits FEEDBACK_PENDING_HOURS for it.
SOFT_BOUNCE_LIMIT = _int("SOFT_BOUNCE_LIMIT", 3, minimum=1)
SOFT_BOUNCE_WINDOW_DAYS = _int("SOFT_BOUNCE_WINDOW_DAYS", 7, minimum=1)
FEEDBACK_PENDING_HOURS = _int("FEEDBACK_PENDING_HOURS", 24, minimum=1)
# The public base URL the providers call back (https://comcenter.example.org): the SMS
# gateway is sent StatusCallback=<it>/api/v1/feedback/sms and signs the URL it calls, which
# behind a proxy differs from the host Django sees. Unset: no StatusCallback is sent and the
# callbacks are checked against the URL as Django sees it.
FEEDBACK_PUBLIC_URL = _url("FEEDBACK_PUBLIC_URL").rstrip("/")
# The ESPs whose anymail tracking webhook is served at /anymail/<esp>/tracking/ (comma
# separated, anymail's names: postmark, mailgun, sendgrid ...). Default: the ESP of
# EMAIL_BACKEND, when it is an anymail backend. Each needs ANYMAIL_WEBHOOK_SECRET (HTTP basic
# auth, "user:password") plus the ESP's own signing key where it has one.
_backend_esp = re.fullmatch(r"anymail\.backends\.(\w+)\.EmailBackend", EMAIL_BACKEND)
EMAIL_TRACKING_ESPS = [
    esp.strip().lower()
    for esp in env.str(
        "EMAIL_TRACKING_ESPS", default=_backend_esp.group(1) if _backend_esp else ""
    ).split(",")
    if esp.strip()
]
if EMAIL_TRACKING_ESPS and not ANYMAIL.get("WEBHOOK_SECRET"):
    raise ImproperlyConfigured(
        "anymail tracking webhooks are served (EMAIL_TRACKING_ESPS or an anymail "
        "EMAIL_BACKEND), so ANYMAIL_WEBHOOK_SECRET must be set (user:password)"
    )
if "mailgun" in EMAIL_TRACKING_ESPS and not (
    ANYMAIL.get("MAILGUN_WEBHOOK_SIGNING_KEY") or ANYMAIL.get("MAILGUN_API_KEY")
):
    raise ImproperlyConfigured(
        "the Mailgun tracking webhook is served, so ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY must be set"
    )
SMS_GATEWAY_URL = _url("SMS_GATEWAY_URL")
SMS_ACCOUNT_SID = env.str("SMS_ACCOUNT_SID", default="")
SMS_AUTH_TOKEN = env.str("SMS_AUTH_TOKEN", default="")
SMS_FROM = env.str("SMS_FROM", default="")
SMS_TIMEOUT = _float("SMS_TIMEOUT", 10.0)
if SMS_GATEWAY_URL and not (SMS_ACCOUNT_SID and SMS_AUTH_TOKEN and SMS_FROM):
    raise ImproperlyConfigured(
        "SMS_GATEWAY_URL is set, so SMS_ACCOUNT_SID, SMS_AUTH_TOKEN and SMS_FROM must be set too"
    )

# Support routing (support/, SPEC §10): the Richpanel-shaped helpdesk API and the classifier.
HELPDESK_URL = _url("HELPDESK_URL")
HELPDESK_API_KEY = env.str("HELPDESK_API_KEY", default="")
HELPDESK_TIMEOUT = _float("HELPDESK_TIMEOUT", 10.0)
if HELPDESK_URL and not HELPDESK_API_KEY:
    raise ImproperlyConfigured("HELPDESK_URL is set, so HELPDESK_API_KEY must be set too")
SUPPORT_CLASSIFIER = env.str("SUPPORT_CLASSIFIER", default="support.classifier.RuleClassifier")

# The provider class of each channel, by dotted path (delivery/providers/registry.py).
DELIVERY_PROVIDERS = {
    "email": "delivery.providers.email.EmailProvider",
    "sms": "delivery.providers.sms.TwilioSmsProvider",
    "helpdesk": "support.helpdesk.RichpanelProvider",
}
# Event types whose messages another app shapes (delivery/hooks.py), by dotted path.
DELIVERY_EVENT_HOOKS = {"ticket.created": "support.hooks.TicketHooks"}

SEND_RATE_PER_MINUTE = _int("SEND_RATE_PER_MINUTE", 10, minimum=1)
# Per-provider limits on top of the global one, by provider name, e.g. "email=600,twilio=60";
# a provider not named here is limited to SEND_RATE_PER_MINUTE.
SEND_RATE_PER_MINUTE_BY_PROVIDER: dict[str, int] = {}
for _item in filter(None, env.str("SEND_RATE_PER_MINUTE_BY_PROVIDER", default="").split(",")):
    _name, _sep, _rate = _item.strip().partition("=")
    if not (_sep and _name and _rate.strip().isdigit() and int(_rate) >= 1):
        raise ImproperlyConfigured(
            "SEND_RATE_PER_MINUTE_BY_PROVIDER must look like email=600,twilio=60 (rates >= 1)"
        )
    SEND_RATE_PER_MINUTE_BY_PROVIDER[_name] = int(_rate)
DLQ_RETENTION_HOURS = _int("DLQ_RETENTION_HOURS", 72, minimum=72)
# Events, messages, attempts and lanes are purged after RETENTION_DAYS; never sooner than the
# idempotency window (72 h) and the DLQ retention, which the purge must not cut short.
RETENTION_DAYS = _int("RETENTION_DAYS", 30, minimum=1)
if max(72, DLQ_RETENTION_HOURS) > RETENTION_DAYS * 24:
    raise ImproperlyConfigured(
        f"RETENTION_DAYS must cover the 72 h idempotency window and DLQ_RETENTION_HOURS "
        f"({DLQ_RETENTION_HOURS} h): at least {-(-max(72, DLQ_RETENTION_HOURS) // 24)} "
        f"(got {RETENTION_DAYS})"
    )
# Audit rows are kept AUDIT_RETENTION_DAYS, purged whole seals at a time (the database
# function refuses anything younger than 30 days).
AUDIT_RETENTION_DAYS = _int("AUDIT_RETENTION_DAYS", 400, minimum=30)
# The longest a lineage row may stay unsealed; verify_audit reports older unsealed rows.
AUDIT_SEAL_INTERVAL_SECONDS = _int("AUDIT_SEAL_INTERVAL_SECONDS", 300, minimum=10)
RETRY_BASE_SECONDS = _float("RETRY_BASE_SECONDS", 30.0)
RETRY_CAP_SECONDS = _float("RETRY_CAP_SECONDS", 3600.0)
RETRY_MAX_ATTEMPTS = _int("RETRY_MAX_ATTEMPTS", 8, minimum=1)
DISPATCH_LEASE_SECONDS = _int("DISPATCH_LEASE_SECONDS", 60, minimum=5)
# A dispatching worker's liveness record lives this long unless its heartbeat renews it; a
# claim whose worker's liveness has run out is recovered then, not at the end of its lease
# (delivery/liveness.py).
WORKER_LIVENESS_SECONDS = _float("WORKER_LIVENESS_SECONDS", 5.0, minimum=1.0)
# A provider found down is probed with one message every this many seconds (delivery/circuit.py).
PROVIDER_PROBE_SECONDS = _float("PROVIDER_PROBE_SECONDS", 2.0)
DISPATCH_BATCH_SIZE = _int("DISPATCH_BATCH_SIZE", 100, minimum=1)

# --- flags: initial values from the environment (safer wins; see flags/registry.py) -----
# Only the flags set in the environment; their defaults live in flags/registry.py alone.
_FLAG_NAMES = (
    "DISABLE_SEND",
    "DISPATCH_PAUSED",
    "INTAKE_PAUSED",
    "PROMO_SENDS",
    "RETRIES_ENABLED",
    "RATE_LIMIT_ENABLED",
    "AUTOMATION_ENABLED",
    "SAFE_MODE",
)
FLAG_ENV = {name: _bool(name, False) for name in _FLAG_NAMES if name in os.environ}
FLAG_CACHE_SECONDS = _float("FLAG_CACHE_SECONDS", 2.0)

# --- the automatic guard and the shared measurements (SPEC §8; guard/) -------------------
# Off under the test runner, in every process a test starts too (they inherit the variable):
# the suite's own traffic (forged tokens, failing views) must not trip it in a worker that
# another test started; the guard's tests turn it on where they evaluate it.
if TESTING:
    os.environ.setdefault("GUARD_ENABLED", "false")
GUARD_ENABLED = _bool("GUARD_ENABLED", True)
GUARD_INTERVAL_SECONDS = _float("GUARD_INTERVAL_SECONDS", 15.0, minimum=0.1)
if GUARD_INTERVAL_SECONDS > 15:
    raise ImproperlyConfigured("GUARD_INTERVAL_SECONDS must be <= 15 (seconds)")
GUARD_WINDOW_SECONDS = _int("GUARD_WINDOW_SECONDS", 300, minimum=1)
GUARD_QUEUE_WINDOW_SECONDS = _int("GUARD_QUEUE_WINDOW_SECONDS", 600, minimum=1)
# The queue baseline is the median of the samples of this long before the queue window.
GUARD_QUEUE_BASELINE_SECONDS = _int("GUARD_QUEUE_BASELINE_SECONDS", 3600, minimum=1)
GUARD_MIN_REQUESTS = _int("GUARD_MIN_REQUESTS", 100, minimum=1)
GUARD_QUEUE_FLOOR = _int("GUARD_QUEUE_FLOOR", 1000, minimum=1)
GUARD_5XX_RATIO = _float("GUARD_5XX_RATIO", 0.01)
GUARD_JWT_FAILURE_RATIO = _float("GUARD_JWT_FAILURE_RATIO", 0.02)
GUARD_ACK_P95_MS = _float("GUARD_ACK_P95_MS", 300.0, minimum=1.0)
# Measurements are counted per bucket of this many seconds; each process flushes what it
# counted at most once per GUARD_FLUSH_SECONDS (one round trip), and a reader flushes first.
GUARD_BUCKET_SECONDS = _int("GUARD_BUCKET_SECONDS", 10, minimum=1)
GUARD_FLUSH_SECONDS = _float("GUARD_FLUSH_SECONDS", 1.0)
# Fine buckets are kept this long (the longest trigger window plus its baseline); hourly
# ones, which the SLO report reads, SLO_RETENTION_DAYS.
GUARD_FINE_RETENTION_SECONDS = (
    max(GUARD_WINDOW_SECONDS, GUARD_QUEUE_WINDOW_SECONDS + GUARD_QUEUE_BASELINE_SECONDS) + 600
)
SLO_RETENTION_DAYS = _int("SLO_RETENTION_DAYS", 90, minimum=1)

# --- i18n, static -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- security ---------------------------------------------------------------------------
SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = _bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = False
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# TLS terminates at the proxy; redirecting here would loop behind proxies that speak HTTP.
SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", False)
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = [
    # SECURE_SSL_REDIRECT: TLS is terminated by the proxy in front, which redirects
    # plain HTTP; redirecting here too would loop behind proxies that speak HTTP upstream.
    "security.W008",
    # SECURE_HSTS_PRELOAD: preloading commits the whole registrable domain and every
    # subdomain to HTTPS in browsers for months, and is requested by the domain's owner on
    # the preload list, not by one application on one host name.
    "security.W021",
]

# --- logging: JSON lines on stdout for every process ------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING_CONFIG = "comcenter.lib.logging.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "comcenter.lib.logging.RequestIdFilter"},
        "redact": {"()": "comcenter.lib.logging.RedactFilter"},
        "refused": {"()": "comcenter.lib.logging.RefusedRequestFilter"},
        "repeats": {
            "()": "comcenter.lib.logging.RepeatLimitFilter",
            "interval": _int("LOG_REPEAT_SECONDS", 60, minimum=0),
            "directory": env.str("LOG_REPEAT_DIR", default=""),
        },
    },
    "formatters": {"json": {"()": "comcenter.lib.logging.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["repeats", "request_id", "redact"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        # A refused Host header and the like: one warning line, no traceback (any client can
        # send one; under granian even framing gunicorn refuses itself reaches Django). A
        # logger's filters see only its own records, so each of Django's is named.
        **{
            f"django.security.{name}": {"filters": ["refused"]}
            for name in (
                "DisallowedHost",
                "DisallowedRedirect",
                "RequestDataTooBig",
                "TooManyFieldsSent",
                "TooManyFilesSent",
                "SuspiciousOperation",
                "csrf",
            )
        },
        # Its DEBUG records of failed variable lookups quote the render context (message
        # data); keep them out even when LOG_LEVEL=DEBUG.
        "django.template": {"level": "INFO"},
        # django-q2 logs as "django-q" (one INFO line per enqueue and per task: noise on the
        # ack path); its warnings and errors still show.
        "django-q": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
    },
}

# Checks of an event type's `data` run at the intake before anything is stored, by dotted
# path (a function raising DRF's ValidationError), so that `events` imports no other app.
EVENT_DATA_VALIDATORS = {"ticket.created": "support.intake.ticket_data_validate"}

# Where the events API reads an event's messages from, by dotted path, so that `events`
# never imports `delivery`.
EVENT_MESSAGES_SELECTOR = "delivery.selectors.messages_for_event"

# Periodic tasks (name, dotted function, every N minutes), registered after every migrate.
PERIODIC_TASKS = [
    ("outbox-sweep", "events.handoff.outbox_sweep", 1),
    ("audit-seal", "audit.services.audit_seal", 1),
    ("console-sample", "console.figures.sample_take", 1),
    ("jwks-refresh", "identity.jwks.jwks_refresh", 1),
    ("auth-pending-verify", "events.pending.pending_verify", 1),
    # Wakes due retries, gap waits, held messages and expired leases (loops ~1 min).
    ("delivery-ticker", "delivery.tasks.tick", 1),
    ("delivery-dlq-purge", "delivery.tasks.purge_dead", 60),
    ("retention-purge", "delivery.retention.retention_purge", 60),
    ("message-tally-fold", "delivery.tally.tally_fold", 1),
    ("audit-retention-purge", "audit.retention.audit_purge", 60),
    # The automatic guard, once a minute here; TICKER_HOOKS runs it every
    # GUARD_INTERVAL_SECONDS.
    ("guard", "guard.tasks.guard_tick", 1),
]
# Called by the delivery ticker after each of its passes (every ~0.25 s), by dotted path so
# that `delivery` knows nothing of them; each decides itself whether it is due and must not
# raise. The guard runs from here every GUARD_INTERVAL_SECONDS (guard/tasks.py); receipts
# that overtook their send are applied from here (delivery/feedback.py).
TICKER_HOOKS = ["guard.tasks.guard_due", "delivery.feedback.feedback_pending_due"]

# Demo credentials for `load_demo` (written to .env by `make run`; never set in production).
DEMO_CLIENT_ID = env.str("DEMO_CLIENT_ID", default="demo")
DEMO_CLIENT_SECRET = env.str("DEMO_CLIENT_SECRET", default="")
