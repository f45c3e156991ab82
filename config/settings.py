"""AnimeAPI settings, read from the environment.

Two modes, chosen by DJANGO_ENV:
- "development" (default): embedded defaults so `make run` works on a bare laptop
  (SQLite, local-memory cache, eager Celery, local media, preview backend).
- "production": DEBUG off, SECRET_KEY required, secure cookies and HSTS;
  `manage.py check --deploy` is clean.
"""

import os
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name, default=""):
    return os.environ.get(name, default)


def envbool(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {value!r}")


def envint(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def envfloat(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


def envdecimal(name, default):
    value = os.environ.get(name) or default
    try:
        return Decimal(value)
    except ArithmeticError:
        raise ImproperlyConfigured(f"{name} must be a decimal number, got {value!r}") from None


def envlist(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DJANGO_ENV = env("DJANGO_ENV", "development")
if DJANGO_ENV not in ("development", "production"):
    raise ImproperlyConfigured("DJANGO_ENV must be 'development' or 'production'")
PRODUCTION = DJANGO_ENV == "production"

DEBUG = envbool("DEBUG", not PRODUCTION)
SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION or not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-secret-key-never-use-in-production"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "allauth",
    "allauth.account",
    "accounts",
    "billing",
    "generation",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.RequestIdMiddleware",
    "generation.middleware.OpenAIErrorEnvelopeMiddleware",
    "config.middleware.JsonErrorsForApiMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "config.middleware.CacheUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "billing.context_processors.balance_banner",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.parse(env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))}
if DATABASES["default"]["ENGINE"].endswith("postgresql") and envbool("DATABASE_POOL", True):
    # A psycopg pool per process: a request waiting on a GPU worker hands its connection back
    # (generation.dispatch and rendering), so hundreds of waiting requests need only a few connections.
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": 1, "max_size": envint("DATABASE_POOL_MAX_SIZE", 20),
            # Short waits: with the database down, a request answers 503 in seconds instead of
            # queueing behind the pool, and the pool retries the database every few seconds.
            "timeout": envfloat("DATABASE_POOL_TIMEOUT_S", 5.0), "reconnect_timeout": 5.0,
        },
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = envint("DATABASE_CONN_MAX_AGE", 60)
# Connections are checked before use (the pool's check on checkout), so the ones a database
# restart killed are replaced instead of failing the request that got them.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/dashboard/"

# django-allauth: e-mail is the login; verification is required before the account is usable.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[AnimeAPI] "

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = env("MEDIA_URL", "/media/")
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# S3-compatible storage for images when a bucket is named (AWS, MinIO, R2...). Keys are random
# (generation.images), so a public bucket does not make images enumerable.
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME")
# 0: plain (public or CDN) URLs; > 0: presigned URLs that expire after this many seconds.
IMAGE_URL_TTL_S = envint("IMAGE_URL_TTL_S", 0)
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env("AWS_S3_REGION_NAME") or None,
            "access_key": env("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env("AWS_SECRET_ACCESS_KEY") or None,
            "custom_domain": env("AWS_S3_CUSTOM_DOMAIN") or None,
            "querystring_auth": IMAGE_URL_TTL_S > 0,
            "querystring_expire": IMAGE_URL_TTL_S or 3600,
            "signature_version": "s3v4",
            "file_overwrite": False,
            "default_acl": None,
            "object_parameters": {"CacheControl": "public, max-age=31536000, immutable"},
        },
    }
# Trusted reverse proxies in front of the web nodes, for the client IP of key allow-lists.
NUM_PROXIES = envint("NUM_PROXIES", 0)
# Public base for absolute image URLs; unset means "the host the request came in on".
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL").rstrip("/")
# Serve MEDIA_ROOT from Django itself (dev and single-node deployments without a CDN).
SERVE_MEDIA = envbool("SERVE_MEDIA", not PRODUCTION)

REDIS_URL = env("REDIS_URL")
if PRODUCTION and not REDIS_URL:
    # Without it limits would be per process (multiplied by the workers) and there is no broker.
    raise ImproperlyConfigured("REDIS_URL is required in production")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: Redis as broker and result store; without REDIS_URL tasks run eagerly in-process.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
# Image work on `generate` (GPU workers); webhooks and housekeeping on the default queue, so a
# slow receiver never holds a GPU.
# A diffusers model other than the default has its own queue, `generate.<model id>` (chosen per
# message by generation.dispatch).
CELERY_TASK_ROUTES = {"generation.tasks.run_generation": {"queue": "generate"},
                      "generation.tasks.run_generation_batch": {"queue": "generate"}}
CELERY_TASK_ACKS_LATE = True
# A task a dead worker had taken is redelivered after this long (Redis has no real acks); the
# generation's claim makes the redelivery a no-op when the row was already finished or expired.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT_S", 600)}
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Prefork children load the model before they report ready; Celery's 4 s default would kill a
# replacement child (after a hard time limit) while it loads, over and over.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = envfloat("CELERY_WORKER_PROC_ALIVE_TIMEOUT", 300.0)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE = {
    "expire-stale-generations": {"task": "generation.tasks.expire_stale_generations", "schedule": 60.0},
    "prune-old-images": {"task": "generation.tasks.prune_old_images", "schedule": 3600.0},
    # Balances against the ledger, key counters against charges; differences are logged as errors.
    "ledger-check": {"task": "generation.tasks.check_ledger", "schedule": crontab(hour=4, minute=17)},
    # Auto-recharges still in flight after AUTO_RECHARGE_STALE_MINUTES: ask Stripe and settle them.
    "settle-stale-recharges": {"task": "billing.stale_recharges.settle", "schedule": 300.0},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AnimeAPI",
    "DESCRIPTION": "Text to anime image generation.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs are public: reading how to call the API needs no key.
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The product's limits and price (the reference's numbers are the defaults).
ANIMEAPI_PRICE_USD = envdecimal("ANIMEAPI_PRICE_USD", "0.009")
ANIMEAPI_RATE_LIMIT_PER_MINUTE = envint("ANIMEAPI_RATE_LIMIT_PER_MINUTE", 10)
ANIMEAPI_DAILY_LIMIT = envint("ANIMEAPI_DAILY_LIMIT", 5000)
ANIMEAPI_MAX_KEYS_PER_USER = envint("ANIMEAPI_MAX_KEYS_PER_USER", 20)
SIGNUP_CREDIT_USD = envdecimal("SIGNUP_CREDIT_USD", "0")

# Generation.
RUNWARE_API_KEY = env("RUNWARE_API_KEY")
RUNWARE_API_URL = env("RUNWARE_API_URL", "https://api.runware.ai/v1")
RUNWARE_MODEL = env("RUNWARE_MODEL", "civitai:1188071@1408658")
RUNWARE_STEPS = envint("RUNWARE_STEPS", 28)
RUNWARE_CFG_SCALE = envfloat("RUNWARE_CFG_SCALE", 5.0)
RUNWARE_SCHEDULER = env("RUNWARE_SCHEDULER", "EulerAncestralDiscreteScheduler")  # "Euler a"
RUNWARE_MAX_RETRIES = envint("RUNWARE_MAX_RETRIES", 3)
# Hosts image URLs may be fetched from (besides RUNWARE_API_URL's own host).
RUNWARE_IMAGE_HOSTS = envlist("RUNWARE_IMAGE_HOSTS", ["im.runware.ai", "cdn.runware.ai"])
DIFFUSERS_MODEL = env("DIFFUSERS_MODEL")
# Local diffusers folder (or hub id) holding an SDXL pipeline's configs and tokenizers, for
# single-file checkpoints (which carry weights only).
DIFFUSERS_CONFIG = env("DIFFUSERS_CONFIG")
DIFFUSERS_VAE = env("DIFFUSERS_VAE")  # optional VAE: folder, hub id or .safetensors (e.g. an fp16-fix VAE)
DIFFUSERS_DEVICE = env("DIFFUSERS_DEVICE")  # empty: cuda if available, else cpu
DIFFUSERS_DTYPE = env("DIFFUSERS_DTYPE")  # empty: bf16 on CUDA, fp32 on CPU; or bf16 / fp16 / fp32
DIFFUSERS_STEPS = envint("DIFFUSERS_STEPS", 28)
DIFFUSERS_CFG = envfloat("DIFFUSERS_CFG", 5.0)
DIFFUSERS_SCHEDULER = env("DIFFUSERS_SCHEDULER", "EulerAncestralDiscreteScheduler")  # or "Euler a", "DPM++ 2M Karras"
DIFFUSERS_PREDICTION_TYPE = env("DIFFUSERS_PREDICTION_TYPE")  # "v_prediction" for NoobAI-XL V-Pred
DIFFUSERS_CHANNELS_LAST = envbool("DIFFUSERS_CHANNELS_LAST", False)
DIFFUSERS_FUSE_QKV = envbool("DIFFUSERS_FUSE_QKV", False)
DIFFUSERS_COMPILE = env("DIFFUSERS_COMPILE")  # empty: off; else a torch.compile mode
# NudeNet's score at or above which an exposed-body label withholds an image (allowNSFW=false).
SAFETY_THRESHOLD = envfloat("SAFETY_THRESHOLD", 0.5)
GENERATION_BACKEND = env(
    "GENERATION_BACKEND",
    "runware" if RUNWARE_API_KEY else "diffusers" if DIFFUSERS_MODEL else "preview",
)
GENERATION_TIMEOUT_S = envfloat("GENERATION_TIMEOUT_S", 60.0)
# A sync request whose backend only waits on the network (Runware, preview) renders in the web
# process, without a Celery round trip; 0 sends every generation through the `generate` queue.
# Web nodes then need the backend's settings (RUNWARE_API_KEY) too.
GENERATION_RENDER_IN_WEB = envbool("GENERATION_RENDER_IN_WEB", True)
# Past the deadline a hanging backend is interrupted (soft) and then its worker killed (hard).
GENERATION_SOFT_LIMIT_MARGIN_S = envfloat("GENERATION_SOFT_LIMIT_MARGIN_S", 5.0)
GENERATION_HARD_LIMIT_MARGIN_S = envfloat("GENERATION_HARD_LIMIT_MARGIN_S", 30.0)
# A charged generation still unfinished this long after it was created is failed and refunded
# by the beat task (its worker died and no web process is waiting for it any more).
GENERATION_LEASE_S = envfloat("GENERATION_LEASE_S", GENERATION_TIMEOUT_S + 120)
# Images older than this are deleted from storage (records and charges stay); 0 keeps them.
IMAGE_RETENTION_DAYS = envint("IMAGE_RETENTION_DAYS", 0)
# Completion webhooks go to public addresses only; tests and private deployments may lift that.
WEBHOOK_ALLOW_PRIVATE_NETWORKS = envbool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", False)
# ... and to the usual web ports only (a URL is not a way to reach a server's SSH or database
# port); "*" allows any port.
WEBHOOK_ALLOWED_PORTS = envlist("WEBHOOK_ALLOWED_PORTS", ["80", "443", "8443"])
# Lossy WEBP settings: method 0-2 keeps encoding off the hot path (method 4 costs ~100 ms at 832x1280).
WEBP_QUALITY = envint("WEBP_QUALITY", 90)
WEBP_METHOD = envint("WEBP_METHOD", 1)
ENHANCE_STYLE = env("ENHANCE_STYLE", "animagine4")
# The models callers may choose (generation/catalog.py): a JSON list; unset, one model made of
# the settings above. The default model's id (else the first), and the one a diffusers worker loads.
GENERATION_MODELS = env("GENERATION_MODELS")
GENERATION_DEFAULT_MODEL = env("GENERATION_DEFAULT_MODEL")
GENERATION_WORKER_MODEL = env("GENERATION_WORKER_MODEL")
ENHANCE_LLM_URL = env("ENHANCE_LLM_URL")
ENHANCE_LLM_MODEL = env("ENHANCE_LLM_MODEL")
ENHANCE_LLM_API_KEY = env("ENHANCE_LLM_API_KEY")
ENHANCE_LLM_TIMEOUT_S = envfloat("ENHANCE_LLM_TIMEOUT_S", 3.0)

# Stripe top-ups.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env("STRIPE_API_BASE")  # only for tests and stripe-mock; unset means Stripe itself
STRIPE_MIN_TOPUP_USD = envdecimal("STRIPE_MIN_TOPUP_USD", "5")
STRIPE_MAX_TOPUP_USD = envdecimal("STRIPE_MAX_TOPUP_USD", "500")
# Put before our idempotency keys; only needed where deployments share one Stripe account.
STRIPE_IDEMPOTENCY_PREFIX = env("STRIPE_IDEMPOTENCY_PREFIX")
# An auto-recharge still in flight this long is settled from Stripe's own record of it. Longer than
# the charge task's retries (about 31 minutes), so the sweep never races a task still trying.
AUTO_RECHARGE_STALE_MINUTES = envint("AUTO_RECHARGE_STALE_MINUTES", 60)

# E-mail: console by default; SMTP from EMAIL_URL (smtp://user:password@host:587, smtps:// for
# implicit TLS) or from the usual EMAIL_HOST/EMAIL_PORT/... settings.
EMAIL_URL = env("EMAIL_URL")
if EMAIL_URL:
    _email = urlsplit(EMAIL_URL)
    if _email.scheme not in ("smtp", "smtps"):
        raise ImproperlyConfigured("EMAIL_URL must start with smtp:// or smtps://")
    EMAIL_HOST = _email.hostname or ""
    EMAIL_PORT = _email.port or (465 if _email.scheme == "smtps" else 587)
    EMAIL_HOST_USER = unquote(_email.username or "")
    EMAIL_HOST_PASSWORD = unquote(_email.password or "")
    EMAIL_USE_SSL = _email.scheme == "smtps"
    EMAIL_USE_TLS = not EMAIL_USE_SSL
else:
    EMAIL_HOST = env("EMAIL_HOST")
    EMAIL_PORT = envint("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "AnimeAPI <noreply@animeapi.local>")


# Only our own scripts and styles; images also from the storage/CDN host; Stripe Checkout is a
# top-level redirect, so it needs no frame or script allowance.
CONTENT_SECURITY_POLICY = env(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
    "form-action 'self'",
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# /metrics: a bearer token when set, else only these networks may scrape.
METRICS_TOKEN = env("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = envlist("METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"])

# json in production (one object per line, with request_id), plain text in development.
LOG_FORMAT = env("LOG_FORMAT", "json" if PRODUCTION else "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.logging.RequestIdFilter"},
                "scrub_secrets": {"()": "config.logging.ScrubSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id", "scrub_secrets"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
