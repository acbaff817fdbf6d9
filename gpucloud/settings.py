"""Settings for both topologies, read from the environment.

Embedded (nothing set): SQLite under var/, in-process cache, channel layer and Celery
broker (worker and beat run as threads of the web process, see gpucloud/embedded.py),
emails written to var/mail/.
Distributed: DATABASE_URL (PostgreSQL) and REDIS_URL (Celery broker, channel layer,
cache) point every web, worker and beat process at the same shared services.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from gpucloud.core.env import env_bool, env_int, env_list, env_str, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GPUCLOUD_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", True)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me-with-SECRET_KEY-in-production"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY") or _DEV_SECRET
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Public base URL for links in emails sent outside a request (invitations); allauth uses the request.
SITE_URL = env_str("SITE_URL", f"http://127.0.0.1:{env_int('PORT', 8000, minimum=1)}").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "ninja",  # its templates and static files: /api/v1/docs serves Swagger UI from them, not a CDN
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "gpucloud",
    "accounts",
    "catalog",
    "billing",
    "webhooks",
    "fleet",
    "deployments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "gpucloud.middleware.NulCharacterMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "gpucloud.middleware.ApiErrorPageMiddleware",
    "gpucloud.middleware.ApiJsonMethodNotAllowedMiddleware",
]

ROOT_URLCONF = "gpucloud.urls"
ASGI_APPLICATION = "gpucloud.asgi.application"

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
                "pages.context_processors.current_org",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": parse_database_url(DATABASE_URL)}
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    (VAR_DIR / "mail").mkdir(parents=True, exist_ok=True)  # embedded state lives here
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "gpucloud.sqlite3",
            # Web requests and the in-process worker write from different threads:
            # WAL lets readers proceed during a write, IMMEDIATE avoids upgrade deadlocks.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery broker ------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "gpucloud"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A socket waits on Redis for up to 5 s per read (channels_redis's BRPOP); redis-py 8
            # gives up on any read after 5 s by default, which killed idle pages' sockets.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 5, "socket_connect_timeout": 5}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 90, minimum=1)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {
        "task": "gpucloud.tasks.heartbeat_task",
        "schedule": float(env_int("GPUCLOUD_HEARTBEAT_SECONDS", 15, minimum=1)),
    },
    "usage-charge": {
        "task": "billing.tasks.usage_tick_task",
        "schedule": float(env_int("GPUCLOUD_METERING_INTERVAL_SECONDS", 60, minimum=1)),
    },
    "holds-expire": {"task": "billing.tasks.holds_expire_task", "schedule": 60.0},
    "zero-balance-sweep": {"task": "billing.tasks.zero_balance_sweep_task", "schedule": 60.0},
    "auto-refill-resume": {"task": "billing.tasks.auto_refill_resume_task", "schedule": 300.0},
    "fleet-reconcile": {"task": "fleet.tasks.fleet_reconcile_task", "schedule": 30.0},
    "offers-refresh": {  # every enabled provider's offers, one driver call each (DESIGN §5)
        "task": "fleet.tasks.offers_refresh_task",
        "schedule": float(env_int("GPUCLOUD_OFFERS_REFRESH_SECONDS", 60, minimum=1)),
    },
    "request-minutes-rollup": {"task": "deployments.tasks.request_minutes_rollup_task", "schedule": 60.0},
    "sla-monitor": {"task": "deployments.tasks.sla_monitor_task", "schedule": 60.0},
    "webhook-dispatch": {
        "task": "webhooks.tasks.webhook_dispatch_task",
        "schedule": float(env_int("GPUCLOUD_WEBHOOK_DISPATCH_SECONDS", 5, minimum=1)),
    },
    "pods-idle": {"task": "deployments.tasks.pods_idle_task", "schedule": 60.0},
    "volumes-reconcile": {"task": "deployments.tasks.volumes_reconcile_task", "schedule": 120.0},
    "autoscale": {
        "task": "deployments.tasks.autoscale_task",
        "schedule": float(env_int("GPUCLOUD_AUTOSCALE_SECONDS", 30, minimum=1)),
    },
}

# --- Auth: custom user, django-allauth ---------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[gpucloud] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if DEBUG else "https"
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.adapters.SocialAccountAdapter"
# allauth's rate limits stay on with its defaults (login, signup, password reset ...) except failed
# sign-ins: 5 per 5 minutes per client address and account (allauth counts per account alone, so
# anyone could lock the owner out), 10 a minute per address, and 30 per 15 minutes per account from
# all addresses together (accounts/adapters.py). They count in the default cache (Redis when set).
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/300s/key",
    "login_failed_account": "30/900s/key",
}
# Behind a load balancer every request comes from its address: name how many proxies append to
# X-Forwarded-For so the limits count the client's own address.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

GITHUB_CLIENT_ID = env_str("GITHUB_CLIENT_ID")
GITHUB_CLIENT_SECRET = env_str("GITHUB_CLIENT_SECRET")
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_PROVIDERS: dict[str, dict[str, object]] = {}
if GITHUB_CLIENT_ID or GITHUB_CLIENT_SECRET:
    if not (GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET):
        raise ImproperlyConfigured("Set both GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET, or neither")
    INSTALLED_APPS.append("allauth.socialaccount.providers.github")
    SOCIALACCOUNT_PROVIDERS["github"] = {
        "APPS": [{"client_id": GITHUB_CLIENT_ID, "secret": GITHUB_CLIENT_SECRET}],
        "SCOPE": ["user:email"],
        "VERIFIED_EMAIL": True,
    }

# --- Email -------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "gpucloud <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
else:
    EMAIL_BACKEND = "gpucloud.mail.FileAndConsoleEmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"

# --- Static and media ----------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "gpucloud.staticfinders.VendoredFinder",  # plotly.js from the plotly wheel
]
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "/media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# WhiteNoise streams files with a sync iterator; under ASGI Django warns about it on every file.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
# In DEBUG, WhiteNoise serves straight from the finders; no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security (production values when DEBUG=0; `check --deploy` stays clean) ------------
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
# Pages read the CSRF token from the page (base.html), never from the cookie: keeping the cookie out of
# scripts' reach costs nothing and keeps it from a pod's pages, which the pod proxy serves on this origin.
CSRF_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own console handler would print every record a second time via root.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # Celery's per-task lines (received, succeeded, beat sending) every few seconds drown the
        # rest; failures are logged at ERROR whatever this says. Start-up lines ("ready.") stay.
        **{
            name: {"level": env_str("CELERY_LOG_LEVEL", "WARNING")}
            for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat")
        },
    },
}

# --- Product settings -----------------------------------------------------------------
GPUCLOUD_API_KEY_TOUCH_SECONDS = 60  # last_used_at is written at most this often per key
GPUCLOUD_METERING_INTERVAL_SECONDS = env_int("GPUCLOUD_METERING_INTERVAL_SECONDS", 60, minimum=1)
GPUCLOUD_ZERO_BALANCE_GRACE_SECONDS = env_int("GPUCLOUD_ZERO_BALANCE_GRACE_SECONDS", 300, minimum=0)
GPUCLOUD_TOPUP_MIN_USD = env_int("GPUCLOUD_TOPUP_MIN_USD", 5, minimum=1)
GPUCLOUD_TOPUP_MAX_USD = env_int("GPUCLOUD_TOPUP_MAX_USD", 10_000, minimum=1)
# balance.low fires when an org's available credit falls below this many dollars.
GPUCLOUD_LOW_BALANCE_USD = env_int("GPUCLOUD_LOW_BALANCE_USD", 5, minimum=0)
GPUCLOUD_AUTO_REFILL_MIN_INTERVAL_SECONDS = env_int("GPUCLOUD_AUTO_REFILL_MIN_INTERVAL_SECONDS", 3600, minimum=0)

# --- Fleet ------------------------------------------------------------------------------
# Every instance we launch carries the tag; the reconciler reaps tagged instances it has no record
# of. Two embedded platforms on one machine (two checkouts) must not reap each other's engines,
# so the embedded default names the var/ directory; a shared database keeps one tag for all.
_EMBEDDED_TAG = "gpucloud-" + hashlib.sha256(str(VAR_DIR.resolve()).encode()).hexdigest()[:8]
GPUCLOUD_FLEET_TAG = env_str("GPUCLOUD_FLEET_TAG", "gpucloud" if DATABASE_URL else _EMBEDDED_TAG)
GPUCLOUD_LOCAL_SLOTS = env_int("GPUCLOUD_LOCAL_SLOTS", 2, minimum=0)
GPUCLOUD_LOCAL_PRICE_MICROS = env_int("GPUCLOUD_LOCAL_PRICE_MICROS", 50_000, minimum=0)  # $0.05/hour
# The local provider's images with packages of their own (make builds them): gpucloud/jupyterlab.
GPUCLOUD_LOCAL_IMAGES_DIR = Path(env_str("GPUCLOUD_LOCAL_IMAGES_DIR") or BASE_DIR / ".venv-images")
GPUCLOUD_LOCAL_THREADS = env_int("GPUCLOUD_LOCAL_THREADS", 0, minimum=0)  # 0: llama.cpp's default
# A serverless endpoint (and a cold-started model) is terminated after this long without a request.
GPUCLOUD_SERVERLESS_IDLE_SECONDS = env_int("GPUCLOUD_SERVERLESS_IDLE_SECONDS", 900, minimum=60)
GPUCLOUD_MAX_REPLICAS = env_int("GPUCLOUD_MAX_REPLICAS", 8, minimum=1)
# Hugging Face ids that are not in the catalog ("model": "Qwen/Qwen2.5-7B-Instruct" on /v1, or that
# model_id in POST /api/v1/deployments): "off" (the default), "any", or a comma-separated allow-list of
# hub organizations ("Qwen,meta-llama,mistralai"; case does not matter). Allowed, the first request
# starts vLLM with the id on the cheapest spot GPU its size fits (catalog/hf_models.py), and 15 idle
# minutes stop it. Off by default: any id puts weights nobody vetted on the operator's cloud accounts,
# at tens of GB downloaded per start; an operator opts in, naming the orgs they trust.
GPUCLOUD_HF_MODELS = env_str("GPUCLOUD_HF_MODELS", "off")
if GPUCLOUD_HF_MODELS.lower() not in ("off", "any") and not all(
    re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", org) for org in env_list("GPUCLOUD_HF_MODELS", [])
):
    raise ImproperlyConfigured(
        f"GPUCLOUD_HF_MODELS={GPUCLOUD_HF_MODELS!r}: use off, any, or hub organizations separated by commas"
    )
# Storage volumes, priced per GB-hour in micro-USD so that a bill is exact to the second: the defaults
# follow RunPod's published volume prices, $0.20/GB-month while no pod runs on it (274 ~ 0.20 / 730 h)
# and $0.10/GB-month while one does (137).
GPUCLOUD_VOLUME_IDLE_GB_HOUR_MICROS = env_int("GPUCLOUD_VOLUME_IDLE_GB_HOUR_MICROS", 274, minimum=0)
GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS = env_int("GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS", 137, minimum=0)
# A spot pod without activity (requests through the pod proxy, SSH sessions where the provider tells) for
# this long is terminated, its volume kept (reference/001's 15 minutes); a pod may say otherwise.
GPUCLOUD_POD_SPOT_IDLE_MINUTES = env_int("GPUCLOUD_POD_SPOT_IDLE_MINUTES", 15, minimum=0)
GPUCLOUD_VOLUME_MAX_GB = env_int("GPUCLOUD_VOLUME_MAX_GB", 4096, minimum=1)
GPUCLOUD_READY_TIMEOUT_SECONDS = env_int("GPUCLOUD_READY_TIMEOUT_SECONDS", 900, minimum=1)
# What the gateway tells a client waiting for a wake (reference/001's estimated_ready_seconds).
GPUCLOUD_READY_ESTIMATE_SECONDS = env_int("GPUCLOUD_READY_ESTIMATE_SECONDS", 300, minimum=1)
GPUCLOUD_READY_ESTIMATE_LOCAL_SECONDS = env_int("GPUCLOUD_READY_ESTIMATE_LOCAL_SECONDS", 15, minimum=1)
# MiB of request bodies over 1 MiB that one gateway process holds at once (gateway/bodies.py);
# a body that does not fit waits up to 5 s, then gets 503 with Retry-After.
GPUCLOUD_GATEWAY_BODY_BUDGET_MIB = env_int("GPUCLOUD_GATEWAY_BODY_BUDGET_MIB", 32, minimum=1)
GPUCLOUD_LAUNCH_GRACE_SECONDS = env_int("GPUCLOUD_LAUNCH_GRACE_SECONDS", 120, minimum=0)
# Offers are stored (catalog.Offer) and refreshed per provider this often by beat, and after launches,
# confirmed terminations and capacity refusals. One offers() call per provider per interval: raise it
# for a cloud whose rate limit is tight. An offer not seen for the max age (a few missed refreshes:
# the provider keeps failing) is no longer shown or launched on.
GPUCLOUD_OFFERS_REFRESH_SECONDS = env_int("GPUCLOUD_OFFERS_REFRESH_SECONDS", 60, minimum=1)
GPUCLOUD_OFFER_MAX_AGE_SECONDS = env_int(
    "GPUCLOUD_OFFER_MAX_AGE_SECONDS", 5 * GPUCLOUD_OFFERS_REFRESH_SECONDS, minimum=GPUCLOUD_OFFERS_REFRESH_SECONDS + 1
)
# Whether the marketplace (GET /api/v1/offers) names each offer's provider; hidden by default (null).
GPUCLOUD_MARKETPLACE_SHOW_PROVIDERS = env_bool("GPUCLOUD_MARKETPLACE_SHOW_PROVIDERS", False)
# Providers' credentials (a GPU cloud's API key) are stored sealed (gpucloud/core/sealed.py): Fernet
# keys, comma-separated, the first seals; none set: derived from SECRET_KEY.
GPUCLOUD_CREDENTIALS_KEYS = env_list("GPUCLOUD_CREDENTIALS_KEY", [])

# --- Stripe (payments switch on only when STRIPE_SECRET_KEY is set) ---------------------
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY")
# --- Outgoing webhooks (webhooks/) --------------------------------------------------
# Hosts that may receive webhooks although they resolve to internal addresses (an on-premise
# receiver, a test receiver on loopback). Empty: only public addresses, over https outside DEBUG.
WEBHOOK_ALLOWED_HOSTS = [host.lower() for host in env_list("WEBHOOK_ALLOWED_HOSTS", [])]
WEBHOOK_TIMEOUT_SECONDS = float(env_int("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1))

STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "https://api.stripe.com")  # tests point this at a local fake
STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", 20, minimum=1)
STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300
