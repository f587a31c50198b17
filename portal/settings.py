"""Settings of the OmniTensor contributor portal.

Everything comes from environment variables (a `.env` file beside manage.py is read too, and
real environment variables win over it). `.env.example` lists every variable with its default
and meaning. The defaults are the embedded ones: SQLite, a Celery transport on the filesystem
and a file cache, all under `var/`, so a fresh checkout runs with no server to install.
Production switches each part with `DATABASE_URL`, `CELERY_BROKER_URL` and `CACHE_URL`.

Values are parsed strictly: a boolean is `true` or `false`, an integer is an integer, and
anything else stops the process with a message naming the variable.
"""

import ipaddress
import os
import secrets
import sys
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# DOTENV_PATH names another file, e.g. one kept outside the checkout.
environ.Env.read_env(os.environ.get("DOTENV_PATH") or BASE_DIR / ".env", overwrite=False)


def env_bool(name: str, default: bool) -> bool:
    """A boolean variable: `true`/`false` (any case), `1`/`0`; anything else is an error."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """An integer variable no smaller than `minimum`; anything else is an error."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw is None or raw == "" else raw


def env_secret(name: str) -> str:
    """A secret from `NAME`, or from the file that `NAME_FILE` names (Docker/K8s secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return os.environ.get(name, "")


DEBUG = env_bool("DEBUG", False)

# Where the embedded defaults keep their data: the SQLite file, the broker's folders, the cache.
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Commands that only read or change the schema, static files and the agent's wheel sign
# nothing, so a checkout can run `manage.py makemigrations --check` (or `migrate`,
# `collectstatic`, `build_agent` at build time) without a secret.
_SCHEMA_COMMANDS = {
    "makemigrations",
    "migrate",
    "showmigrations",
    "sqlmigrate",
    "collectstatic",
    "build_agent",
}
_COMMAND = sys.argv[1] if len(sys.argv) > 1 and Path(sys.argv[0]).name == "manage.py" else ""


def _secret_key_weakness(key: str) -> str | None:
    """Why `key` fails Django's deploy check W009, or None; production refuses such a key."""
    from django.core.checks.security import base  # Django's own thresholds, never a copy

    if (
        len(key) >= base.SECRET_KEY_MIN_LENGTH
        and len(set(key)) >= base.SECRET_KEY_MIN_UNIQUE_CHARACTERS
        and not key.startswith(base.SECRET_KEY_INSECURE_PREFIX)
    ):
        return None
    return (
        f"it needs at least {base.SECRET_KEY_MIN_LENGTH} characters, at least "
        f"{base.SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them different, and no "
        f"{base.SECRET_KEY_INSECURE_PREFIX!r} prefix"
    )


SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY and not DEBUG and _COMMAND in _SCHEMA_COMMANDS:
    SECRET_KEY = secrets.token_urlsafe(64)  # used for nothing, thrown away with the process
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is false. "
            "For local development run with DEBUG=true, as `make run` does."
        )
    # Development only: a key kept in var/ so sessions survive restarts of `make run`.
    _dev_key = VAR_DIR / "dev-secret-key"
    if not _dev_key.exists():
        _dev_key.write_text(secrets.token_urlsafe(64))
        _dev_key.chmod(0o600)
    SECRET_KEY = _dev_key.read_text().strip()
if not DEBUG and (_weakness := _secret_key_weakness(SECRET_KEY)):
    # Sessions and CSRF tokens are only as hard to forge as this key, so the deploy check's
    # warning W009 is a refusal here. The message never echoes the key.
    raise ImproperlyConfigured(
        f"SECRET_KEY (or SECRET_KEY_FILE) is too weak for DEBUG=false: {_weakness}. Generate "
        "one with: python -c 'import secrets; print(secrets.token_urlsafe(64))'"
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "portal",
    "contributors",
    "rewards",
]

MIDDLEWARE = [
    # First, so that the time it measures is the whole stack's (portal/metrics.py).
    "portal.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "portal.middleware.RejectNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, so that it sees a view's exception first.
    "portal.middleware.DatabaseUnavailableMiddleware",
]
# What the agent API's requests go through (portal/wsgi.py): nothing that only pages need.
AGENT_API_MIDDLEWARE = [
    # First, so that the time it measures is the whole stack's (portal/metrics.py).
    "portal.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "portal.middleware.RejectNulMiddleware",
    "portal.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "rewards.context.policy",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

DATABASES = {
    "default": env.db_url_config(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"))
}
_db = DATABASES["default"]
_conn_max_age = env_int("CONN_MAX_AGE", 60)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web, worker and beat processes read while one writes; IMMEDIATE transactions
    # take the write lock up front so two writers queue on the busy timeout instead of failing
    # with "database is locked" when a reader upgrades.
    _db["OPTIONS"] = {
        "timeout": env_int("SQLITE_BUSY_TIMEOUT_S", 20, minimum=1),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests run real worker processes, which cannot see an in-memory database; one file per
    # test run, so that runs side by side never share one.
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test-portal-{os.getpid()}.sqlite3")}
else:
    _db["CONN_MAX_AGE"] = _conn_max_age
    # No ping before each request: see portal.middleware.DatabaseUnavailableMiddleware.
    _db["CONN_HEALTH_CHECKS"] = env_bool("CONN_HEALTH_CHECKS", False)
    _db["TEST"] = {"NAME": f"test_{_db['NAME']}_{os.getpid()}"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "contributors.Contributor"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Cache (shared by web and worker processes) ---------------------------------------------

CACHES = {"default": env.cache_url_config(env_str("CACHE_URL", f"filecache://{VAR_DIR / 'cache'}"))}
if CACHES["default"]["BACKEND"].endswith("FileBasedCache"):
    # Django culls a third of a file cache past MAX_ENTRIES (300 by default); the embedded
    # default keeps far more before culling. (Rate-limit counters are not in it: see
    # portal/lib/ratelimit.py.)
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 100_000)
elif CACHES["default"]["BACKEND"].endswith("RedisCache"):
    # redis-py waits forever for a server that accepts but does not answer; a request must
    # not. The portal works without the cache meanwhile (portal/lib/hotcache.py).
    _cache_options = CACHES["default"].setdefault("OPTIONS", {})
    _cache_options.setdefault("socket_connect_timeout", 1)
    _cache_options.setdefault("socket_timeout", 2)

# --- Celery ---------------------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport needs no server: each message is a file. One folder for both
    # directions, and an absolute control folder (its default is relative to the cwd).
    _broker_dir = Path(env_str("CELERY_BROKER_DIR", str(VAR_DIR / "broker")))
    for _sub in ("queue", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Publishing happens in the request path (after commit): a broker that is down must cost a
    # request about a second, not the client's default timeouts, nor kombu's reconnection
    # attempts (2 s of sleeping by default); the batch is already durable and a drain or the
    # sweeper stores it later. (Workers reconnect with their own, patient, settings.)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": 1,
        "socket_timeout": 5,
        "max_retries": 0,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
# No result backend: tasks record their outcome in the database, which is the source of truth.
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged after it ran, so a worker killed mid-task leaves it to be redelivered
# (on Redis); sweepers cover the transports that cannot redeliver.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT_S", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = max(1, CELERY_TASK_TIME_LIMIT - 30)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker whose broker went away tries again every second (portal/celery_consumer.py), and for
# as long as it takes: giving up after Celery's 100 attempts would leave a stopped worker.
CELERY_WORKER_CONSUMER = "portal.celery_consumer:Consumer"
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"

# How often beat asks a worker to prove it is alive (seen on /healthz).
WORKER_HEARTBEAT_S = env_int("WORKER_HEARTBEAT_S", 30, minimum=1)

# --- HTTP, security -------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
]
# Static files as production serves them: collected by `collectstatic` under hashed names,
# compressed ahead (gzip and Brotli) and cached by browsers for a year (WhiteNoise marks hashed
# names immutable). On unless DEBUG; `make run` turns it on for the demo after collecting, so
# plotly.js (1.2 MB) travels as 330 kB once. Off, files come straight from the source tree.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "portal.storage.CollectedStaticStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Pages link hashed names only, so the plain copies are not kept (nor compressed: half the time).
WHITENOISE_KEEP_ONLY_HASHED_FILES = STATIC_MANIFEST
WHITENOISE_AUTOREFRESH = not STATIC_MANIFEST
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers and Prometheus reach each web process directly, often over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE_S", 14 * 24 * 3600, minimum=60)

# Content-Security-Policy of every page (django-csp), so that text an agent chose can never run
# as script even if a template slipped: scripts come only from our own static files (no CDN, no
# inline <script>, no on*= attributes), except Swagger UI's start-up script on /api/docs/, which
# carries this response's nonce (templates/drf_spectacular/swagger_ui.html). The agent API goes
# through AGENT_API_MIDDLEWARE and sends none: its answers are JSON, never rendered.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        # plotly.js carries its CSS inside its script and adds it as <style> elements (modebar,
        # hover labels), which take no nonce; drf-spectacular's Swagger UI page has one too.
        # Only 'unsafe-inline' allows them (tried: style-src 'self' alone blocks both). Styles
        # run no code; script-src stays strict.
        "style-src": [SELF, UNSAFE_INLINE],
        # data: and blob: images: plotly's "download as PNG" and Swagger UI's icons.
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.lib.authentication.JsonSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["portal.lib.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "portal.lib.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "portal.lib.schema.PortalSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# The OpenAPI schema at /api/schema/ and its Swagger UI at /api/docs/: each app's
# api/schema.py, applied on its views; what they share is in portal/lib/schema.py.
SPECTACULAR_SETTINGS = {
    "TITLE": "OmniTensor contributor portal API",
    "VERSION": "1",
    "DESCRIPTION": (
        "The JSON API that node agents, the scheduler and the portal's pages call "
        '(DESIGN.md "Agent API (v1)"). Every error is `{"error": code, "detail": text}`, '
        'plus `"errors": [{"field", "error"}]` for field problems.'
    ),
    # Swagger UI and ReDoc come from drf-spectacular-sidecar under /static/, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No "valid" badge fetched from validator.swagger.io (it would send it our schema's URL).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Sign-in with Ethereum (EIP-4361) ------------------------------------------------------

# The domain sign-in messages must name; empty means the host the request came to.
SIWE_DOMAIN = env_str("SIWE_DOMAIN", "")
# The chain sign-in messages (and, later, claim vouchers) are for. 31337: a local dev chain.
CHAIN_ID = env_int("CHAIN_ID", 31337, minimum=1)
SIWE_STATEMENT = env_str(
    "SIWE_STATEMENT", "Sign in to the OmniTensor contributor portal. This costs nothing."
)
SIWE_NONCE_TTL_S = env_int("SIWE_NONCE_TTL_S", 600, minimum=10)
SIWE_MAX_FUTURE_SKEW_S = env_int("SIWE_MAX_FUTURE_SKEW_S", 300)
SIWE_VERIFY_RATE_PER_MIN = env_int("SIWE_VERIFY_RATE_PER_MIN", 30, minimum=1)
SIWE_NONCE_RATE_PER_MIN = env_int("SIWE_NONCE_RATE_PER_MIN", 30, minimum=1)
# Addresses (or networks, CIDR) of reverse proxies whose X-Forwarded-For is believed: behind
# them the client is the last hop none of them is (read from the right, as proxies append);
# otherwise it is REMOTE_ADDR.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
try:
    TRUSTED_PROXY_NETWORKS = [ipaddress.ip_network(p, strict=False) for p in TRUSTED_PROXIES]
except ValueError as exc:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES: {exc}") from None

# --- Agents and telemetry -------------------------------------------------------------------

AGENT_SAMPLE_INTERVAL_S = env_int("AGENT_SAMPLE_INTERVAL_S", 10, minimum=1)
AGENT_REPORT_INTERVAL_S = env_int("AGENT_REPORT_INTERVAL_S", 30, minimum=1)
ENROLLMENT_CODE_TTL_S = env_int("ENROLLMENT_CODE_TTL_S", 3600, minimum=60)
TELEMETRY_MAX_SAMPLES = env_int("TELEMETRY_MAX_SAMPLES", 1000, minimum=1)
TELEMETRY_MAX_BODY_BYTES = env_int("TELEMETRY_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
TELEMETRY_RATE_PER_MIN = env_int("TELEMETRY_RATE_PER_MIN", 120, minimum=1)
# Accepted sample times: from this long ago to this far ahead of the portal's clock.
TELEMETRY_MAX_AGE_S = env_int("TELEMETRY_MAX_AGE_S", 24 * 3600, minimum=60)
TELEMETRY_MAX_AHEAD_S = env_int("TELEMETRY_MAX_AHEAD_S", 300)
# What a node may register (DESIGN.md "GPU identity"): physical GPUs per node (MIG instances
# not counted), nodes per contributor (revoked ones not counted), the memory an unrated model
# counts with, and how far above the catalog's board power a reading is implausible.
MAX_GPUS_PER_NODE = env_int("MAX_GPUS_PER_NODE", 16, minimum=1)
MAX_NODES_PER_CONTRIBUTOR = env_int("MAX_NODES_PER_CONTRIBUTOR", 50, minimum=1)
GPU_UNRATED_MAX_MEMORY_MIB = env_int("GPU_UNRATED_MAX_MEMORY_MIB", 24 * 1024, minimum=1)
TELEMETRY_POWER_FACTOR_PCT = env_int("TELEMETRY_POWER_FACTOR_PCT", 150, minimum=100)
# A GPU moves to a new node of the same contributor (a machine re-installed) when its node is
# revoked or has been offline this long.
GPU_MOVE_AFTER_OFFLINE_S = env_int("GPU_MOVE_AFTER_OFFLINE_S", 600, minimum=0)

# Proof of GPU (agent/PROOF.md). Off: rewards pay for what agents report, as before (networks
# that verify hardware another way; tests of other features).
GPU_VERIFICATION = env_bool("GPU_VERIFICATION", True)
# Challenge size: n×n int8 matrices, and as many rounds as make GPU_VERIFICATION_WORK_S of
# work at the claimed model's expected throughput (catalog int8_tops × EFFICIENCY_PCT %, the
# share of the peak the reference PyTorch backend reaches), at most MAX_ROUNDS.
GPU_VERIFICATION_N = env_int("GPU_VERIFICATION_N", 8192, minimum=64)
GPU_VERIFICATION_WORK_S = env_int("GPU_VERIFICATION_WORK_S", 2, minimum=1)
GPU_VERIFICATION_MAX_ROUNDS = env_int("GPU_VERIFICATION_MAX_ROUNDS", 4096, minimum=1)
GPU_VERIFICATION_EFFICIENCY_PCT = env_int("GPU_VERIFICATION_EFFICIENCY_PCT", 25, minimum=1)
GPU_VERIFICATION_DEFAULT_TOPS = env_int("GPU_VERIFICATION_DEFAULT_TOPS", 100, minimum=1)
# Rows the portal checks per challenge: an agent that did the work for only a share f of the
# rows passes with probability f^CHECKS.
GPU_VERIFICATION_CHECKS = env_int("GPU_VERIFICATION_CHECKS", 16, minimum=1)
# Commit within DEADLINE_FACTOR × the expected work time + ALLOWANCE_S (latency, start-up)
# of delivery; reveal within REVEAL_S of the commit.
GPU_VERIFICATION_DEADLINE_FACTOR = env_int("GPU_VERIFICATION_DEADLINE_FACTOR", 3, minimum=1)
GPU_VERIFICATION_ALLOWANCE_S = env_int("GPU_VERIFICATION_ALLOWANCE_S", 15, minimum=1)
GPU_VERIFICATION_REVEAL_S = env_int("GPU_VERIFICATION_REVEAL_S", 60, minimum=1)
# Passed checks below SLOW_PCT % of the expected throughput fail as slow_for_model; only
# judged when the expected work time is at least MIN_TIMED_S (tiny demo challenges are not).
GPU_VERIFICATION_SLOW_PCT = env_int("GPU_VERIFICATION_SLOW_PCT", 50, minimum=1)
GPU_VERIFICATION_MIN_TIMED_S = env_int("GPU_VERIFICATION_MIN_TIMED_S", 1, minimum=0)
# Random re-verification: exponential intervals with this mean, never longer than half of
# VALID_S; a pass counts for VALID_S; after a failure a new challenge comes RETRY_S later.
GPU_VERIFICATION_INTERVAL_S = env_int("GPU_VERIFICATION_INTERVAL_S", 6 * 3600, minimum=60)
GPU_VERIFICATION_VALID_S = env_int("GPU_VERIFICATION_VALID_S", 24 * 3600, minimum=120)
GPU_VERIFICATION_RETRY_S = env_int("GPU_VERIFICATION_RETRY_S", 3600, minimum=10)
# How often the sweep fails missed deadlines and issues the challenges that are due.
GPU_VERIFICATION_SWEEP_S = env_int("GPU_VERIFICATION_SWEEP_S", 15, minimum=1)
# A successful scheduler probe caps the GPU's idle memory for this long.
GPU_PROBE_VALID_S = env_int("GPU_PROBE_VALID_S", 24 * 3600, minimum=60)
# Per client address, per minute: enrollment attempts, and requests with a node or service
# token that is not valid (429 with Retry-After past them).
ENROLL_RATE_PER_MIN = env_int("ENROLL_RATE_PER_MIN", 20, minimum=1)
BAD_TOKEN_RATE_PER_MIN = env_int("BAD_TOKEN_RATE_PER_MIN", 30, minimum=1)
# Every INGEST_SWEEP_EVERY_S the sweeper asks for drains if a batch has been pending longer
# than INGEST_SWEEP_AFTER_S and no drain holds its lease (its drain was lost, and no request
# came since to ask for another): what a killed worker costs when no agent is reporting.
INGEST_SWEEP_AFTER_S = env_int("INGEST_SWEEP_AFTER_S", 3, minimum=1)
INGEST_SWEEP_EVERY_S = env_int("INGEST_SWEEP_EVERY_S", 5, minimum=1)
# Batches one worker transaction stores together, and how many drains may be queued at once
# (about the number of worker processes in the deployment; more only costs idle messages).
INGEST_DRAIN_BATCHES = env_int("INGEST_DRAIN_BATCHES", 200, minimum=1)
INGEST_DRAINS = env_int("INGEST_DRAINS", 2, minimum=1)
INGEST_DRAIN_MAX_S = env_int("INGEST_DRAIN_MAX_S", 10, minimum=1)
# A drain that found fewer batches than it could take waits this long (ms) for more.
INGEST_DRAIN_PAUSE_S = env_int("INGEST_DRAIN_PAUSE_MS", 250, minimum=0) / 1000
# Minute and hour rollups are redone this often for the GPUs that reported since.
ROLLUP_EVERY_S = env_int("ROLLUP_EVERY_S", 60, minimum=1)
ROLLUP_MAX_SPANS = env_int("ROLLUP_MAX_SPANS", 20000, minimum=1)
# A sample covers at most this long (DESIGN.md "Coverage"); rollups count online time with it.
COVERAGE_MAX_GAP_S = env_int("COVERAGE_MAX_GAP_S", 30, minimum=1)
# Retention: raw samples, minute rollups and processed batches; hourly rollups are kept.
RETENTION_RAW_DAYS = env_int("RETENTION_RAW_DAYS", 7, minimum=2)
RETENTION_MINUTE_DAYS = env_int("RETENTION_MINUTE_DAYS", 90, minimum=2)
RETENTION_BATCH_DAYS = env_int("RETENTION_BATCH_DAYS", 7, minimum=2)
# PostgreSQL keeps raw samples in one partition per UTC day (contributors/partitions.py); beat
# creates today's and this many next days' partitions every hour, so a day's partition exists
# long before its first sample.
SAMPLE_PARTITIONS_AHEAD_DAYS = env_int("SAMPLE_PARTITIONS_AHEAD_DAYS", 3, minimum=1)
# A batch whose ingestion raised this many times is marked failed and shown to admins.
INGEST_MAX_ATTEMPTS = env_int("INGEST_MAX_ATTEMPTS", 10, minimum=1)

# --- Demo ---------------------------------------------------------------------------------

# `make run` starts a simulated fleet (see portal/demo.py) and, with DEBUG, offers sign-in as
# its demo contributors. Never enable in production: the demo keys are public.
DEMO_FLEET = env_bool("DEMO_FLEET", False)
DEMO_PORTAL_URL = env_str("DEMO_PORTAL_URL", "http://127.0.0.1:8000")

# The dashboard's live chart: minutes of history drawn at first, seconds between updates.
DASHBOARD_LIVE_MINUTES = env_int("DASHBOARD_LIVE_MINUTES", 15, minimum=1)
DASHBOARD_REFRESH_S = env_int("DASHBOARD_REFRESH_S", 5, minimum=1)

LOGIN_URL = "signin"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL must be a logging level name, not {LOG_LEVEL!r}")
# `plain`: one readable line per record; `json`: one JSON object per line (time, level, logger,
# message, and the exception when there is one) for a log collector. Web, worker and beat
# alike: Celery leaves the root logger to these settings (CELERY_WORKER_HIJACK_ROOT_LOGGER).
LOG_FORMAT = env_str("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601, UTC
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Metrics (README "Metrics and Grafana") ------------------------------------------------

# The bearer token Prometheus sends to GET /metrics (or METRICS_TOKEN_FILE naming a file that
# holds it). Empty: /metrics answers 404, as if there were no such page.
METRICS_TOKEN = env_secret("METRICS_TOKEN")
METRICS_TOKEN_MIN_LENGTH = 24
if METRICS_TOKEN and len(METRICS_TOKEN) < METRICS_TOKEN_MIN_LENGTH:
    raise ImproperlyConfigured(
        f"METRICS_TOKEN must be at least {METRICS_TOKEN_MIN_LENGTH} characters long; generate "
        "one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
# Client addresses (CIDRs; the client as TRUSTED_PROXIES tell it) that may scrape; empty: any
# address with the token. Others get 403.
try:
    METRICS_ALLOWED_NETWORKS = [
        ipaddress.ip_network(net, strict=False) for net in env_list("METRICS_ALLOWED_NETWORKS", [])
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {exc}") from None
# prometheus-client reads PROMETHEUS_MULTIPROC_DIR itself, when a process starts: with it, the
# processes sharing the folder (gunicorn's workers, Celery's pool) are added up on /metrics.
_multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _multiproc_dir and not Path(_multiproc_dir).is_dir():
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR={_multiproc_dir!r} is not a folder; create it (empty) first"
    )

# --- Rewards ----------------------------------------------------------------------------------

# The default reward policy, in effect from the beginning of time until an admin adds a
# RewardPolicy (DESIGN.md "Reward definitions"). The demo (`make run`) uses 5-minute epochs
# with 1 minute of grace so that rewards show up quickly.
REWARD_EPOCH_S = env_int("REWARD_EPOCH_S", 3600, minimum=60)
REWARD_GRACE_S = env_int("REWARD_GRACE_S", 900, minimum=0)
REWARD_MAX_GAP_S = env_int("REWARD_MAX_GAP_S", 30, minimum=1)
# Pools per epoch, in wei (OMNIT has 18 decimals): 1,000 OMNIT compute, 250 OMNIT idle.
REWARD_COMPUTE_POOL_WEI = env_int("REWARD_COMPUTE_POOL_WEI", 1_000 * 10**18)
REWARD_IDLE_POOL_WEI = env_int("REWARD_IDLE_POOL_WEI", 250 * 10**18)
# How often Celery beat looks for epochs due for settlement.
REWARD_SETTLE_EVERY_S = env_int("REWARD_SETTLE_EVERY_S", 60, minimum=5)
# How often beat computes the public figures of /network/ and /leaderboard/ (rewards/public/);
# pages and the API serve what the last run stored.
PUBLIC_STATS_EVERY_S = env_int("PUBLIC_STATS_EVERY_S", 60, minimum=5)
# The key of the GPU pseudonyms in published epoch manifests (rewards.manifests): empty, one
# derived from SECRET_KEY. Set it to rotate SECRET_KEY without renaming every GPU in them.
MANIFEST_PSEUDONYM_KEY = env_secret("MANIFEST_PSEUDONYM_KEY")

# --- Claims and chain -------------------------------------------------------------------------

# The on-chain reward distributor (contracts/RewardDistributor.sol) and its claim signer.
# CHAIN_ID (above) is the chain vouchers are for. Issuing a voucher needs DISTRIBUTOR_ADDRESS and
# the signer key only, never a node connection; without them /api/v1/me/claims answers 503.
DISTRIBUTOR_ADDRESS = env_str("DISTRIBUTOR_ADDRESS", "")
OMNIT_TOKEN_ADDRESS = env_str("OMNIT_TOKEN_ADDRESS", "")
# The signer's private key (hex), or CLAIM_SIGNER_KEY_FILE naming a file that holds it. Never
# stored in the database or the repository; the distributor's owner can rotate the signer.
CLAIM_SIGNER_KEY = env_secret("CLAIM_SIGNER_KEY")
# How long a voucher may be redeemed, seconds. Until the watcher has seen a confirmed block past
# its deadline, its amount stays pending.
CLAIM_VOUCHER_TTL_S = env_int("CLAIM_VOUCHER_TTL_S", 3600, minimum=60)
# The JSON-RPC endpoint the watcher reads Claimed events from (http(s)://, ws(s):// or an IPC
# path); empty: vouchers only, no watcher.
WEB3_PROVIDER_URI = env_str("WEB3_PROVIDER_URI", "")
# Blocks on top of the one holding a Claimed event before the watcher believes it; reorgs
# shallower than this never reach the database.
CHAIN_CONFIRMATIONS = env_int("CHAIN_CONFIRMATIONS", 12)
# The block the distributor was deployed in: the watcher starts reading there.
DISTRIBUTOR_DEPLOY_BLOCK = env_int("DISTRIBUTOR_DEPLOY_BLOCK", 0)
# Blocks per eth_getLogs request, and how often beat runs the watcher (seconds).
CLAIM_WATCH_MAX_BLOCKS = env_int("CLAIM_WATCH_MAX_BLOCKS", 2000, minimum=1)
CLAIM_WATCH_EVERY_S = env_int("CLAIM_WATCH_EVERY_S", 15, minimum=1)
# Relayed (gasless) claims: the portal sends a contributor's voucher from this account and pays
# the gas (CLAIM_RELAYER_KEY, or CLAIM_RELAYER_KEY_FILE naming a file that holds it; empty: no
# relaying, 503 relay_not_configured). The tokens still go only to the voucher's account. Bounded
# by relays per contributor per day and a gas-price cap (wei per gas; 503 gas_price_too_high).
CLAIM_RELAYER_KEY = env_secret("CLAIM_RELAYER_KEY")
CLAIM_RELAY_PER_DAY = env_int("CLAIM_RELAY_PER_DAY", 3)
# The relayer's own cap: relays of all contributors together in 24 hours (429
# relay_budget_spent past it), which bounds what reverted relays can cost it.
CLAIM_RELAY_NETWORK_PER_DAY = env_int("CLAIM_RELAY_NETWORK_PER_DAY", 1000, minimum=1)
CLAIM_RELAY_MAX_GAS_PRICE_WEI = env_int("CLAIM_RELAY_MAX_GAS_PRICE_WEI", 50 * 10**9, minimum=1)
# A transaction page of a block explorer; {tx} is replaced by the hash, e.g.
# https://etherscan.io/tx/{tx}. Empty: hashes are shown without a link.
EXPLORER_TX_URL = env_str("EXPLORER_TX_URL", "")

# --- Token prices for tax-ready exports (README "Tax-ready exports") -------------------------

# The currency the rewards CSV and the universal (tax tool) export value OMNIT in, at the price
# in effect when each epoch closed; quotes are kept per currency in the price table (admin, or
# the feed below). A code of 2-10 capitals and digits, e.g. USD, EUR.
PRICE_CURRENCY = env_str("PRICE_CURRENCY", "USD").strip().upper()
if not (
    2 <= len(PRICE_CURRENCY) <= 10
    and PRICE_CURRENCY.isascii()
    and PRICE_CURRENCY.isalnum()
    and PRICE_CURRENCY[0].isalpha()
):
    raise ImproperlyConfigured(f"PRICE_CURRENCY must be a code such as USD, not {PRICE_CURRENCY!r}")
# The price at time T is the latest quote at or before T, if it is at most this old (seconds);
# an older one leaves the value empty, with a note saying so (never a guess).
PRICE_MAX_AGE_S = env_int("PRICE_MAX_AGE_S", 24 * 3600, minimum=1)
# An on-chain price feed with Chainlink's AggregatorV3Interface that quotes 1 OMNIT in
# PRICE_CURRENCY, read through WEB3_PROVIDER_URI. Empty: prices come from admins only. A beat task
# records its rounds into the price table every PRICE_FEED_EVERY_S; exports never call the chain.
PRICE_FEED_ADDRESS = env_str("PRICE_FEED_ADDRESS", "").strip()
if PRICE_FEED_ADDRESS and not (
    len(PRICE_FEED_ADDRESS) == 42
    and PRICE_FEED_ADDRESS.startswith("0x")
    and all(c in "0123456789abcdefABCDEF" for c in PRICE_FEED_ADDRESS[2:])
):
    raise ImproperlyConfigured(
        f"PRICE_FEED_ADDRESS must be 0x and 40 hex digits, not {PRICE_FEED_ADDRESS!r}"
    )
PRICE_FEED_EVERY_S = env_int("PRICE_FEED_EVERY_S", 300, minimum=5)

# --- Alerts -----------------------------------------------------------------------------------

# Where absolute links in alerts (unsubscribe, verify, a GPU's page) point. Default: the demo's
# address with DEBUG, else https:// and the first of ALLOWED_HOSTS (an email's links must
# never point at localhost).
_first_host = next((h for h in ALLOWED_HOSTS if h and not h.startswith((".", "*"))), "")
PORTAL_URL = env_str(
    "PORTAL_URL", DEMO_PORTAL_URL if DEBUG or not _first_host else f"https://{_first_host}"
).rstrip("/")
# Email: EMAIL_URL in django-environ's form: smtp://host:port, smtp+tls://user:password@host:587,
# smtp+ssl://…:465, consolemail:// or filemail:// (files under EMAIL_FILE_PATH). Default: with
# DEBUG the file backend (the demo's alert page shows what it wrote), else SMTP on localhost:25.
_email = env.email_url("EMAIL_URL", default="filemail://" if DEBUG else "smtp://localhost:25")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_S", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "OmniTensor alerts <alerts@localhost>")
# How often beat evaluates alert conditions and sweeps deliveries that are due, seconds.
ALERT_EVALUATE_EVERY_S = env_int("ALERT_EVALUATE_EVERY_S", 60, minimum=5)
# Webhooks and Apprise targets on loopback, private or link-local addresses are refused unless
# this is true (tests and the demo only: in production it lets users probe the internal net).
ALERT_ALLOW_PRIVATE_TARGETS = env_bool("ALERT_ALLOW_PRIVATE_TARGETS", DEBUG)
# Apprise URL schemes a channel may use: services with a fixed host, and generic ones whose
# host is checked like a webhook's.
ALERT_APPRISE_SCHEMES = env_list(
    "ALERT_APPRISE_SCHEMES",
    ["discord", "slack", "tgram", "ntfy", "ntfys", "matrix", "matrixs", "json", "jsons",
     "msteams", "pover", "mmost", "mmosts", "gotify", "gotifys"],
)  # fmt: skip
# Outbound connect and read timeouts of one send, seconds.
ALERT_SEND_TIMEOUT_S = env_int("ALERT_SEND_TIMEOUT_S", 5, minimum=1)
# A delivery is tried this often (back-off 30 s, 2, 8, 32 min …) before it is marked failed.
ALERT_MAX_ATTEMPTS = env_int("ALERT_MAX_ATTEMPTS", 6, minimum=1)
ALERT_RETRY_BASE_S = env_int("ALERT_RETRY_BASE_S", 30, minimum=1)
# A worker holds a delivery this long while it sends; past it, another may send it again.
# The delivery task's soft and hard time limits end 10 and 5 s before it, so a receiver that
# trickles its answer cannot keep a send going into another worker's lease.
ALERT_DELIVERY_LEASE_S = env_int("ALERT_DELIVERY_LEASE_S", 120, minimum=1)
if ALERT_DELIVERY_LEASE_S < 2 * ALERT_SEND_TIMEOUT_S + 15:
    raise ImproperlyConfigured(
        f"ALERT_DELIVERY_LEASE_S ({ALERT_DELIVERY_LEASE_S}) must be at least twice "
        f"ALERT_SEND_TIMEOUT_S plus 15 s ({2 * ALERT_SEND_TIMEOUT_S + 15}): a send must end "
        "within its lease."
    )
# Flapping: past this many offline alerts for one machine or GPU within ALERT_FLAP_WINDOW_S,
# further outages are recorded in the history but not sent until it is stable.
ALERT_FLAP_LIMIT = env_int("ALERT_FLAP_LIMIT", 3, minimum=1)
ALERT_FLAP_WINDOW_S = env_int("ALERT_FLAP_WINDOW_S", 6 * 3600, minimum=60)
# The "rewards at risk" warning comes this long before an epoch closes (at most half an epoch).
ALERT_EPOCH_WARNING_S = env_int("ALERT_EPOCH_WARNING_S", 15 * 60, minimum=30)
# "Earned nothing" repeats for the same GPU and reason only after this long.
ALERT_REPEAT_S = env_int("ALERT_REPEAT_S", 24 * 3600, minimum=60)
# The daily digest goes out at this hour of the contributor's time zone.
ALERT_DIGEST_HOUR = env_int("ALERT_DIGEST_HOUR", 8)
if ALERT_DIGEST_HOUR > 23:
    raise ImproperlyConfigured(
        f"ALERT_DIGEST_HOUR must be an hour, 0 to 23, not {ALERT_DIGEST_HOUR}"
    )
# Channels per contributor, and test messages per contributor per hour.
ALERT_MAX_CHANNELS = env_int("ALERT_MAX_CHANNELS", 10, minimum=1)
ALERT_TESTS_PER_HOUR = env_int("ALERT_TESTS_PER_HOUR", 10, minimum=1)
# Test and confirmation emails one address gets in a day, whoever asks for them.
ALERT_EMAIL_TESTS_PER_DAY = env_int("ALERT_EMAIL_TESTS_PER_DAY", 3, minimum=1)
