"""
Settings for paymentsite, read from the environment (and a `.env` file beside
manage.py) with django-environ. See the configuration table in the README.

No secret has a default that works in production, and nothing fails open: with
DEBUG off, a missing, short or `django-insecure-` DJANGO_SECRET_KEY, or a missing
STRIPE_SECRET_KEY, stops start-up with ImproperlyConfigured; HTTPS is on unless
SECURE_SSL=false says otherwise; proxy headers are believed only with BEHIND_PROXY.
"""

import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The development .env that `make run` writes (DEBUG on). ENV_FILE names another
# file, or none when empty: the tests set it empty so no developer's file changes them.
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE:
    environ.Env.read_env(ENV_FILE)


def env_required(name: str, *, dev_default: str | None, debug: bool) -> str:
    """A secret: its dev default is used only while DEBUG is on."""
    value = env.str(name, default="")
    if value:
        return value
    if debug and dev_default is not None:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. Set it in the environment or in .env "
        "(a development default is only used when DEBUG is on)."
    )


# What `manage.py check --deploy` asks of a secret key (security.W009).
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5


def env_secret_key(name: str, *, dev_default: str, debug: bool) -> str:
    """Django's secret: with DEBUG off, a long random one, never Django's generated `django-insecure-` kind."""
    value = env_required(name, dev_default=dev_default, debug=debug)
    if debug:
        return value
    # Never echo the value, only what is wrong with it.
    if value.startswith("django-insecure-"):
        raise ImproperlyConfigured(f"{name} is a `django-insecure-` development key: set a random production key.")
    if len(value) < SECRET_KEY_MIN_LENGTH or len(set(value)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        raise ImproperlyConfigured(
            f"{name} is too weak: use at least {SECRET_KEY_MIN_LENGTH} random characters "
            f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(64))')."
        )
    return value


THROTTLE_RATE = re.compile(r"^[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)$")


def env_rate(name: str, default: str) -> str | None:
    """A throttle rate, "N/second|minute|hour|day", or "off" (None)."""
    value = env.str(name, default=default).strip().lower()
    if value in ("off", "none", ""):
        return None
    if not THROTTLE_RATE.match(value):
        raise ImproperlyConfigured(f'{name} must be a rate such as "30/minute" or "off", not {value!r}.')
    return value


def env_stripe_key(name: str, prefixes: tuple[str, ...], *, required: bool) -> str:
    value = env.str(name, default="")
    if value and not value.startswith(prefixes):
        # Never echo the value: it may be a secret pasted into the wrong variable.
        raise ImproperlyConfigured(f"{name} must start with one of {', '.join(prefixes)}.")
    if required and not value:
        raise ImproperlyConfigured(f"{name} is not set: paymentsite cannot talk to Stripe without it.")
    return value


DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env_secret_key(
    "DJANGO_SECRET_KEY",
    dev_default="django-insecure-development-only-key-never-use-in-production",
    debug=DEBUG,
)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # The back-office and the storefront come first: their templates override the admin's.
    "backoffice",
    "storefront",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "core",
    "payments",
    "refunds",
    "webhooks",
]
# The development kit (the local Stripe's `manage.py localstripe`): development and tests only.
DEVKIT = env.bool("DEVKIT", default=DEBUG)
if DEVKIT:
    INSTALLED_APPS.append("devkit")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the API docs' static files from the app itself: no CDN, no extra server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A NUL in a query string or form reaches admin filters and searches: a 400 before any view.
    "core.api.RefuseUnstorableInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into its page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "paymentsite.urls"

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

WSGI_APPLICATION = "paymentsite.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default="postgres:///paymentsite")}
DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"
# Opening a PostgreSQL connection per request was the largest single cost of a
# payment creation under py-spy (see BENCHMARKS.md): keep them, and check one
# before reuse so a connection broken by a database restart is replaced, not used.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DATABASES["default"].setdefault("OPTIONS", {})
# A request that waits on a row lock longer than this fails instead of piling up.
DATABASES["default"]["OPTIONS"].setdefault("options", f"-c lock_timeout={env.int('DB_LOCK_TIMEOUT_MS', default=10000)}")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The throttles' counters, shared by every process and machine: a table in the
# database (made by core's migration). CACHE_URL names another (redis://...).
CACHES = {"default": env.cache("CACHE_URL", default="dbcache://paymentsite_cache")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

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
# Without collectstatic (development, tests) whitenoise finds files where the apps keep them.
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/accounts/login/"

# Security headers that `check --deploy` asks for. The HTTPS ones follow one
# switch, on unless DEBUG is on or SECURE_SSL=false says the site is not behind TLS.
SECURE_SSL = env.bool("SECURE_SSL", default=not DEBUG)
SESSION_COOKIE_SECURE = SECURE_SSL
CSRF_COOKIE_SECURE = SECURE_SSL
SECURE_SSL_REDIRECT = SECURE_SSL
# A load balancer's health check may come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if SECURE_SSL else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_SSL
SECURE_HSTS_PRELOAD = SECURE_SSL
# X-Forwarded-Proto and X-Forwarded-For are anyone's to send: they are believed
# only when a proxy in front of the site sets them (and drops what clients sent).
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
X_FRAME_OPTIONS = "DENY"

# --- Sign-in throttling (django-axes) ----------------------------------------
# The customers' and the admin's sign-in alike: after SIGNIN_FAILURE_LIMIT failures
# for one account (from anywhere) or from one address (for any account), that
# account or address is locked for SIGNIN_LOCKOUT_MINUTES; the page says so (429).

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env.bool("SIGNIN_THROTTLING", default=True)
AXES_FAILURE_LIMIT = env.int("SIGNIN_FAILURE_LIMIT", default=10)
SIGNIN_LOCKOUT_MINUTES = env.int("SIGNIN_LOCKOUT_MINUTES", default=15)
if AXES_FAILURE_LIMIT < 1 or SIGNIN_LOCKOUT_MINUTES < 1:
    raise ImproperlyConfigured("SIGNIN_FAILURE_LIMIT and SIGNIN_LOCKOUT_MINUTES must be at least 1.")
AXES_COOLOFF_TIME = timedelta(minutes=SIGNIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "storefront.signin.client_address"
AXES_LOCKOUT_CALLABLE = "storefront.signin.locked_out"
AXES_RESET_ON_SUCCESS = True
# Every sign-in is in Django's own last_login; axes keeps the failures only.
AXES_DISABLE_ACCESS_LOG = True

# --- Stripe -----------------------------------------------------------------

STRIPE_SECRET_KEY = env_stripe_key("STRIPE_SECRET_KEY", ("sk_test_", "sk_live_", "rk_"), required=not DEBUG)
STRIPE_PUBLISHABLE_KEY = env_stripe_key("STRIPE_PUBLISHABLE_KEY", ("pk_",), required=False)
# Without it every webhook is refused (400): an unverifiable event is never applied.
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
STRIPE_JS_URL = env.str("STRIPE_JS_URL", default="https://js.stripe.com/v3/")
# Seconds before a Stripe call counts as ambiguous (the write may or may not have happened).
STRIPE_TIMEOUT = env.float("STRIPE_TIMEOUT", default=20.0)
# How long a payment creation may hold its idempotency key before a retry may take over.
PAYMENT_CREATE_LEASE_SECONDS = env.int("PAYMENT_CREATE_LEASE_SECONDS", default=60)
# The same for a refund being sent to Stripe (409 for a concurrent request with its key).
REFUND_CREATE_LEASE_SECONDS = env.int("REFUND_CREATE_LEASE_SECONDS", default=60)

# --- REST framework ---------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # The API speaks JSON only, and only JSON that PostgreSQL can store.
    "DEFAULT_PARSER_CLASSES": ["core.api.StrictJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    # JSON only, errors included (no HTML browsable API).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["core.api.MoneyThrottle"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

# Per user, the calls that move money or call Stripe (core.api.MoneyThrottle):
# "N/second|minute|hour|day", or "off". API_THROTTLING=false turns them all off.
API_THROTTLING = env.bool("API_THROTTLING", default=True)
API_THROTTLE_RATES = {
    # POST /api/payments/
    "payment_create": env_rate("THROTTLE_PAYMENT_CREATE", "60/minute"),
    # setup-intent/ and confirm/: card testing tries many cards in a row.
    "payment_card": env_rate("THROTTLE_PAYMENT_CARD", "20/minute"),
    # cancel/ (and capture/)
    "payment_change": env_rate("THROTTLE_PAYMENT_CHANGE", "30/minute"),
    # POST /api/payments/{id}/refunds/
    "refund_create": env_rate("THROTTLE_REFUND_CREATE", "30/minute"),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "paymentsite API",
    "DESCRIPTION": "Payments and refunds over Stripe. Money is an integer in the currency's minor unit.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.document_errors",
    ],
    # Payments and refunds both have a `status`: name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "PaymentStatusEnum": "payments.models.Payment.Status",
        "RefundStatusEnum": "refunds.models.Refund.Status",
    },
}

# --- Logging ----------------------------------------------------------------
# Request bodies and headers are never logged: they carry client secrets and keys.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # SafeFormatter scrubs row data PostgreSQL quotes and Stripe secrets from every line, tracebacks included.
    "formatters": {
        "plain": {"()": "core.errors.SafeFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # The SDK logs request details at debug level; keep it quiet.
        "stripe": {"level": "WARNING"},
    },
}

# --- Background jobs (procrastinate) -----------------------------------------
# The worker process is `python manage.py procrastinate worker`; any number of them,
# on any number of machines, share the jobs kept in this same PostgreSQL (the schema
# comes with `migrate`). A job is queued in the same transaction as the row that needs
# it, so neither is ever kept without the other. Each app's jobs are in its tasks.py;
# the schedules of the periodic ones and the recovery of jobs a dead worker left
# running are in paymentsite/tasks.py.

INSTALLED_APPS.append("procrastinate.contrib.django")
PROCRASTINATE_ON_APP_READY = "paymentsite.tasks.on_app_ready"
PROCRASTINATE_WORKER_DEFAULTS = {
    # Jobs run at once in one worker process (threads, each with its own connection).
    "concurrency": env.int("JOBS_CONCURRENCY", default=4),
    # A worker proves it is alive this often; one silent for JOBS_STALLED_AFTER_SECONDS
    # is dead, and the jobs it was running are run again (see paymentsite/tasks.py).
    "update_heartbeat_interval": env.float("JOBS_HEARTBEAT_SECONDS", default=10.0),
    "stalled_worker_timeout": env.float("JOBS_STALLED_AFTER_SECONDS", default=30.0),
    # New jobs wake workers at once (LISTEN/NOTIFY); this is the fallback poll.
    "fetch_job_polling_interval": env.float("JOBS_POLL_SECONDS", default=5.0),
    # A finished job's record is its row (the webhook event, the refund): the job goes.
    # Failed jobs stay, for the admin and the dashboard.
    "delete_jobs": "successful",
    # Ctrl-C or SIGTERM: let running jobs finish this long, then stop; what is cut is run again.
    "shutdown_graceful_timeout": env.float("JOBS_SHUTDOWN_SECONDS", default=30.0),
}
# Periodic jobs, as cron lines (five fields, or six with seconds last); an empty one is
# not scheduled. Each takes a queueing lock, so many workers never pile them up.
JOBS_SCHEDULE = {
    "reconcile": env.str("SCHEDULE_RECONCILE", default="17 * * * *"),
    "retry_refunds": env.str("SCHEDULE_RETRY_REFUNDS", default="*/5 * * * *"),
    "overdue_payments": env.str("SCHEDULE_OVERDUE_PAYMENTS", default="*/10 * * * *"),
    "stalled_jobs": env.str("SCHEDULE_STALLED_JOBS", default="* * * * *"),
    "sync_ledger": env.str("SCHEDULE_SYNC_LEDGER", default="*/15 * * * *"),
}
# reconcile's window, like `reconcile_stripe --since`: payments and refunds created this recently.
RECONCILE_SINCE_HOURS = env.float("RECONCILE_SINCE_HOURS", default=72.0)
# A payment not final and unchanged for this long has events overdue: it is read from Stripe.
PAYMENT_EVENTS_OVERDUE_MINUTES = env.int("PAYMENT_EVENTS_OVERDUE_MINUTES", default=30)
# Applying a Stripe event: retried after 2, 4, 8... seconds (WEBHOOK_RETRY_BASE_SECONDS ** n),
# like Stripe's own redeliveries over about three days; then the event is `failed`.
WEBHOOK_APPLY_RETRIES = env.int("WEBHOOK_APPLY_RETRIES", default=17)
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=2)
# procrastinate says at every start which tasks it registered, at every webhook that it
# queued a job, and every minute which periodic job: only its warnings. Its workers log
# each job they run.
for _quiet in ("procrastinate.blueprints", "procrastinate.periodic", "procrastinate.jobs"):
    LOGGING["loggers"][_quiet] = {"level": "WARNING"}

# --- Notifications to the storefront -----------------------------------------
# Every change a storefront cares about writes an event in the same transaction
# (notifications.outbox); a job per endpoint sends it, signed per Standard Webhooks.

INSTALLED_APPS.append("notifications")
# The books: Stripe's balance transactions and payouts, and a double-entry journal.
INSTALLED_APPS.append("ledger")
# Seconds an endpoint has to answer 2xx; later, or anything else, is a failed attempt.
NOTIFICATIONS_TIMEOUT = env.float("NOTIFICATIONS_TIMEOUT", default=5.0)
# The waits between attempts, in seconds: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
# (27.6 hours in all, as Standard Webhooks suggests); after the last, the delivery is `failed`.
NOTIFICATIONS_DEFAULT_RETRY_SECONDS = [5, 300, 1800, 7200, 18000, 36000, 36000]
NOTIFICATIONS_RETRY_SECONDS = env.list(
    "NOTIFICATIONS_RETRY_SECONDS", cast=int, default=NOTIFICATIONS_DEFAULT_RETRY_SECONDS
)
if any(seconds < 0 for seconds in NOTIFICATIONS_RETRY_SECONDS):
    raise ImproperlyConfigured("NOTIFICATIONS_RETRY_SECONDS must list waits of 0 seconds or more.")
# An endpoint that failed every attempt for this long is disabled, and flagged on the dashboard.
NOTIFICATIONS_DISABLE_AFTER_HOURS = env.float("NOTIFICATIONS_DISABLE_AFTER_HOURS", default=120.0)
# After a secret is rotated, the old one signs beside the new one this long.
NOTIFICATIONS_SECRET_OVERLAP_HOURS = env.float("NOTIFICATIONS_SECRET_OVERLAP_HOURS", default=24.0)
