"""Settings for the distribution operations portal, read from the environment.

Every variable is documented in README.md and .env.example. Test overrides live
beside this module in ``portal/settings_test.py``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _prepare_threshold(value: str) -> int | None:
    """How many runs of a statement on one connection before it is prepared; "off": never."""
    value = str(value).strip().lower()
    if value in ("off", "none", ""):
        return None
    if not value.isdigit():
        raise ValueError(f"DATABASE_PREPARE_THRESHOLD must be a whole number or off, got {value!r}")
    return int(value)


def database_from_url(url: str) -> dict:
    """Translate a postgres:// URL into a Django DATABASES entry (PostgreSQL only)."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ValueError(f"DATABASE_URL must be a postgres:// URL, got scheme {parsed.scheme!r}")
    options: dict = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    # Web processes borrow connections from a pool per process (DATABASE_POOL_SIZE, see portal/run.py)
    # instead of opening one per request; a request that waits longer than the timeout for one is
    # answered 503. Off (0) elsewhere: Celery's prefork children keep one connection each.
    pool_size = int(os.environ.get("DATABASE_POOL_SIZE", "0"))
    if pool_size > 0:
        options["pool"] = {
            "min_size": 1,
            "max_size": pool_size,
            "timeout": float(os.environ.get("DATABASE_POOL_TIMEOUT", "10")),
        }
    # Parameters are bound on the server, and a statement a connection has run PREPARE_THRESHOLD
    # times is prepared there: PostgreSQL then plans each hot query once per connection instead of
    # on every call, which halves its CPU per order. Behind a pooler in transaction mode (PgBouncer)
    # a prepared statement may land on another server connection: set DATABASE_PREPARE_THRESHOLD=off.
    options["prepare_threshold"] = _prepare_threshold(
        options.get("prepare_threshold", os.environ.get("DATABASE_PREPARE_THRESHOLD", "5"))
    )
    options["server_side_binding"] = str(options.get("server_side_binding", "true")).lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "portal",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        # 0 by default: under ASGI every request runs in a thread of its own, which would keep its
        # own connection open. Celery workers (one thread each) set it higher; see portal/run.py.
        "CONN_MAX_AGE": 0 if pool_size else int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": options,
        "TEST": {"NAME": os.environ.get("DATABASE_TEST_NAME") or None},
    }


def load_secret_key() -> str:
    """SECRET_KEY from the environment, else a generated development key kept in ./var/."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


def default_service_url(kind: str) -> str:
    """The embedded server's URL; `make run` / `make test` start it when no URL is configured."""
    from portal import embedded

    if kind == "database":
        return f"postgres://postgres@127.0.0.1:{embedded.PG_PORT}/{embedded.PG_DATABASE}"
    return f"redis://127.0.0.1:{embedded.REDIS_PORT}/0"


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = load_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "portal.views.csrf_failure"  # a page that says to reload and send again
# Number of reverse proxies in front of the app whose X-Forwarded-For entries are trusted.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))

DATABASE_URL = os.environ.get("DATABASE_URL") or default_service_url("database")
REDIS_URL = os.environ.get("REDIS_URL") or default_service_url("redis")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "django_filters",
    "simple_history",
    "axes",
    "portal",
    "inventory",
    "orchestration",
    "exceptions",
    "integrations",
    "automation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "portal.middleware.RefuseNulCharactersMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "portal",
    }
}

# Redis pub/sub: a group hint is one Redis message that each server process fans out to its own
# sockets, instead of one list pop per socket per hint (the core layer); live hints are best effort
# by design (clients catch up by sequence number), which is what pub/sub offers.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "portal:channels"},
    }
}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling: lock a username+IP pair after repeated failures.
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("LOGIN_COOLOFF_HOURS", "0.25"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "portal.security.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# Cookies and transport security. HTTPS settings switch on with SECURE_COOKIES.
SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG and env_bool("HTTPS", False))
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_HOURS", "12")) * 3600
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if SECURE_COOKIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS", "0"))

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("MAX_BODY_BYTES", str(1024 * 1024)))
# Threads per web server process that run HTTP requests (portal/http_bridge.py); DATABASE_POOL_SIZE needs a couple more.
WEB_THREADS = int(os.environ.get("WEB_THREADS", "8"))

# Partner API (integrations/api): Idempotency-Key retention, a rate limit that overrides every partner's own,
# and the benchmark-only endpoints (never on in production).
IDEMPOTENCY_KEY_TTL_HOURS = float(os.environ.get("IDEMPOTENCY_KEY_TTL_HOURS", "24"))
PARTNER_RATE_LIMIT_PER_MINUTE = (
    int(os.environ["PARTNER_RATE_LIMIT_PER_MINUTE"]) if os.environ.get("PARTNER_RATE_LIMIT_PER_MINUTE") else None
)
BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS", False)
# Finished message logs (API requests, processed events, delivered messages) are deleted after this many days;
# 0 keeps them for ever. An event id a partner sends again after that is processed again.
MESSAGE_LOG_RETENTION_DAYS = int(os.environ.get("MESSAGE_LOG_RETENTION_DAYS", "90"))

# Celery: the database rows are the source of truth; tasks are thin and idempotent.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE: dict = {
    "events-sweep-undispatched": {"task": "portal.tasks.sweep_events", "schedule": 15.0},
    "automation-expire-handoffs": {"task": "automation.tasks.expire_handoffs", "schedule": 10.0},
    "automation-check-heartbeats": {"task": "automation.tasks.check_heartbeats", "schedule": 10.0},
    "automation-dispatch-pending": {"task": "automation.tasks.dispatch_pending", "schedule": 30.0},
    "automation-score-open-orders": {"task": "automation.tasks.score_open_orders", "schedule": 60.0},
    "automation-retrain-risk": {"task": "automation.tasks.retrain_risk", "schedule": 86400.0},
    "integrations-inbound-process-due": {"task": "integrations.inbound.process_due", "schedule": 5.0},
    "integrations-expire-idempotency-keys": {
        "task": "integrations.inbound.expire_idempotency_keys",
        "schedule": 3600.0,
    },
    "exceptions-check-sla": {"task": "exceptions.tasks.check_sla", "schedule": 30.0},
    "orchestration-watch-cutoffs": {"task": "orchestration.tasks.watch_cutoffs", "schedule": 60.0},
    "orchestration-release-due": {
        "task": "orchestration.tasks.release_due",
        "schedule": float(os.environ.get("RELEASE_INTERVAL_SECONDS", "60")),
    },
    "integrations-outbound-tick": {
        "task": "integrations.tasks.outbound_tick",
        "schedule": float(os.environ.get("OUTBOUND_TICK_SECONDS", "2")),
    },
    "integrations-prune-message-logs": {"task": "integrations.tasks.prune_message_logs", "schedule": 3600.0},
    "integrations-reconcile-inventory": {
        "task": "integrations.tasks.reconcile_inventory",
        "schedule": float(os.environ.get("RECONCILE_INTERVAL_SECONDS", "300")),
    },
}
CELERY_TASK_ROUTES: dict = {
    "integrations.tasks.deliver_message": {"queue": "outbound"},
    "integrations.tasks.outbound_tick": {"queue": "outbound"},
}

# Orders due today and not packed this many minutes before their carrier cutoff raise a case.
CUTOFF_WARNING_MINUTES = int(os.environ.get("CUTOFF_WARNING_MINUTES", "30"))

# Queues, named from the environment so workers can be split (e.g. per warehouse) and test runs isolated.
EVENTS_QUEUE = os.environ.get("EVENTS_QUEUE", "celery")  # event dispatch and automation follow-ups
INBOUND_QUEUE = os.environ.get("INBOUND_QUEUE", "inbound")  # partner events, processed per subject

# Outbound partner messages (integrations/delivery.py).
OUTBOUND_QUEUE = os.environ.get("OUTBOUND_QUEUE", "outbound")
OUTBOUND_MAX_ATTEMPTS = int(os.environ.get("OUTBOUND_MAX_ATTEMPTS", "8"))  # a partner's own max_attempts wins
OUTBOUND_BACKOFF_BASE_SECONDS = float(os.environ.get("OUTBOUND_BACKOFF_BASE_SECONDS", "2"))
OUTBOUND_BACKOFF_MAX_SECONDS = float(os.environ.get("OUTBOUND_BACKOFF_MAX_SECONDS", "900"))
OUTBOUND_RETRY_AFTER_MAX_SECONDS = float(os.environ.get("OUTBOUND_RETRY_AFTER_MAX_SECONDS", "3600"))
OUTBOUND_SENDING_LEASE_SECONDS = float(os.environ.get("OUTBOUND_SENDING_LEASE_SECONDS", "120"))
OUTBOUND_CLAIM_SECONDS = float(os.environ.get("OUTBOUND_CLAIM_SECONDS", "60"))
OUTBOUND_TICK_BATCH = int(os.environ.get("OUTBOUND_TICK_BATCH", "500"))
# Inventory reconciliation against the ERP's book stock: differences above this many units raise a case.
INVENTORY_MISMATCH_THRESHOLD = int(os.environ.get("INVENTORY_MISMATCH_THRESHOLD", "0"))
SIMULATOR_PORT = int(os.environ.get("SIMULATOR_PORT", "8765"))

CELERY_WORKER_HIJACK_ROOT_LOGGER = False
WORKER_HEARTBEAT_SECONDS = 10
WORKER_HEARTBEAT_STALE_SECONDS = 45

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Distribution operations portal API",
    "DESCRIPTION": "Partner API: orders, availability and warehouse events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "portal.logging.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # Every task received / succeeded is a line at INFO: say WORKER_LOG_LEVEL=INFO to watch them.
        "celery": {"level": os.environ.get("WORKER_LOG_LEVEL", "WARNING")},
        "httpx": {"level": "WARNING"},  # one line per partner call; delivery outcomes are in the message log
    },
}

# The named non-human actors that may change state (history shows these by name).
SYSTEM_ACTOR_USERNAME = "system"
