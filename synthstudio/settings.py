"""Settings for synthstudio, read from the environment.

Development defaults need no server: SQLite under ``var/`` and a Celery broker on the local file system. DEBUG is off
unless set, and then the app refuses to start without ``SECRET_KEY`` and ``ALLOWED_HOSTS``. Every variable is listed in
the README.
"""
from pathlib import Path

import dj_database_url
import phonenumbers
from django.core.exceptions import ImproperlyConfigured

from synthstudio.lib.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SYNTHSTUDIO_VAR_DIR", str(BASE_DIR / "var")))
# Local state of the embedded runtime (SQLite file, filesystem broker, uploads); ignored by git.
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Off unless asked for, so that a deployment that forgets it fails closed; `manage.py dev` and the test suite
# (tests/support/settings.py) turn it on.
DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", "" if not DEBUG else _DEV_SECRET_KEY)
# The same bar as `check --deploy` (security.W009), enforced at start-up instead of warned about.
if not DEBUG and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5
                  or SECRET_KEY.startswith("django-insecure-")):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of 50+ characters when DEBUG is false (DEBUG is false unless set; "
        "for development run `manage.py dev` or set DEBUG=true)"
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is false")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "annotation",
    "generation",
    # django-ninja's own app: its Swagger UI files, served as our static files (the API's docs page loads no CDN).
    "ninja",
    "synthstudio.api",
    "synthstudio.webhooks.apps.WebhooksConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "synthstudio.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "synthstudio.urls"
WSGI_APPLICATION = "synthstudio.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server and the worker read while the other writes; IMMEDIATE takes the write lock at the start
    # of a transaction so two writers queue up instead of failing with "database is locked" half way through.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that a real worker process in the tests can open the test database too.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (annotation/accounts/throttle.py): failed sign-ins per account name and per client address in a sliding
# window, stored in the database so that every web process sees the same counts.
AUTHENTICATION_BACKENDS = ["annotation.accounts.throttle.ThrottledModelBackend"]
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_LIMIT_PER_ADDRESS = env_int("LOGIN_FAILURE_LIMIT_PER_ADDRESS", 50)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900)
# Password-reset e-mails per address asked for, and reset requests per client address, in that window.
PASSWORD_RESET_LIMIT = env_int("PASSWORD_RESET_LIMIT", 3)
PASSWORD_RESET_LIMIT_PER_ADDRESS = env_int("PASSWORD_RESET_LIMIT_PER_ADDRESS", 20)
# Behind a reverse proxy, the META key of the header it puts the client's address in (e.g. HTTP_X_FORWARDED_FOR);
# empty: REMOTE_ADDR. Without it every client shares the proxy's address and its limit.
LOGIN_ADDRESS_HEADER = env_str("LOGIN_ADDRESS_HEADER", "")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# E-mail (password reset links): printed on the web process's console unless an SMTP server is named.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                        else "django.core.mail.backends.console.EmailBackend")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "synthstudio <noreply@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# Uploads larger than this are refused with a message that names the limit (see annotation import).
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Production hardening: `manage.py check --deploy` is clean when DEBUG is false.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every response (synthstudio/csp.py; Django 6.0's own middleware reads this setting in this
# shape): nothing inline, no eval, nothing from another origin. Scripts and styles live in static/, and htmx is told not
# to inject styles or evaluate attributes (templates/base.html).
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Celery. The embedded default is kombu's filesystem transport: a real broker that needs no server.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_BROKER_DIR = Path(env_str("CELERY_BROKER_DIR", str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
    (VAR_DIR / "celery-results").mkdir(exist_ok=True)
    _default_backend = f"file://{VAR_DIR / 'celery-results'}"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
    _default_backend = CELERY_BROKER_URL
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", _default_backend)
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The CPU niceness Celery workers give themselves at start (synthstudio/celery.py): batch work (scoring rounds,
# imports, dashboards) yields the CPU to web requests on a machine that runs both; 0 leaves the worker as started.
WORKER_NICENESS = env_int("WORKER_NICENESS", 10)
if not 0 <= WORKER_NICENESS <= 19:
    raise ImproperlyConfigured(f"WORKER_NICENESS must be 0-19 (a niceness a process may give itself), not "
                               f"{WORKER_NICENESS}")

# LLM provider defaults; API keys are read from the environment only and never stored or rendered.
LLM_PROVIDER = env_str("LLM_PROVIDER", "offline")
# Key variables a project's LLM connection may name: NAME, or NAME@host to send that key to one host only.
LLM_KEY_VARIABLES = env_list("LLM_KEY_VARIABLES", [])
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")
OPENAI_MODEL = env_str("OPENAI_MODEL", "gpt-4o-mini")
OPENAI_TIMEOUT = env_float("OPENAI_TIMEOUT", 30.0)
OPENAI_MAX_CONCURRENCY = env_int("OPENAI_MAX_CONCURRENCY", 8)
OPENAI_MAX_RETRIES = env_int("OPENAI_MAX_RETRIES", 4)

# PII filter of generated samples: phone numbers written without +country code are read in this region (ISO 3166).
PII_PHONE_REGION = env_str("PII_PHONE_REGION", "US").strip().upper()
if PII_PHONE_REGION not in phonenumbers.SUPPORTED_REGIONS:
    raise ImproperlyConfigured(f"PII_PHONE_REGION={PII_PHONE_REGION!r} is not a phone region (use a two-letter "
                               f"country code such as US, GB or DE)")

# The cache: per process unless CACHE_URL names a shared one (redis://host:6379/N), which several web processes need
# for the API's rate limits to count across them.
CACHE_URL = env_str("CACHE_URL", "")
if CACHE_URL and not CACHE_URL.startswith(("redis://", "rediss://")):
    raise ImproperlyConfigured(f"CACHE_URL must be a redis:// URL, not {CACHE_URL!r}")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL} if CACHE_URL
          else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# API rate limits per token (per user for a browser session), for the expensive calls: (calls, seconds).
API_RATE_LIMITS = {
    "export": (env_int("API_EXPORT_LIMIT_PER_HOUR", 60), 3600),
    "job_create": (env_int("API_JOB_CREATE_LIMIT_PER_HOUR", 60), 3600),
}

# Review queue
REVIEW_LEASE_SECONDS = env_int("REVIEW_LEASE_SECONDS", 600)

# Webhooks (synthstudio/webhooks/): loopback, private and link-local receivers are refused unless allowed here (the
# test suite's loopback receiver; a receiver on the operator's own network).
WEBHOOKS_ALLOW_PRIVATE = env_bool("WEBHOOKS_ALLOW_PRIVATE", False)
WEBHOOKS_TIMEOUT_SECONDS = env_float("WEBHOOKS_TIMEOUT_SECONDS", 5.0)
# A failed attempt is retried after base x 2^(attempt-1) seconds (at most 6 hours apart) for this long after the event.
WEBHOOKS_RETRY_BASE_SECONDS = env_float("WEBHOOKS_RETRY_BASE_SECONDS", 30.0)
WEBHOOKS_RETRY_FOR_SECONDS = env_int("WEBHOOKS_RETRY_FOR_SECONDS", 24 * 3600)

# Selective annotation: a local sentence-transformers model folder to use instead of TF-IDF features (never downloaded).
SELECTION_EMBEDDING_MODEL_PATH = env_str("SELECTION_EMBEDDING_MODEL_PATH", "")
# Scoring rounds (annotation/selection/chunks.py): a project with more items than SELECTION_TRAIN_SIZE trains on all
# human decisions plus a stratified sample of that many LLM-labelled items, and scores the rest in chunks of
# SELECTION_CHUNK_SIZE that any worker runs; SELECTION_FEATURES picks learned n-grams or hashed ones.
SELECTION_TRAIN_SIZE = env_int("SELECTION_TRAIN_SIZE", 50_000)
SELECTION_CHUNK_SIZE = env_int("SELECTION_CHUNK_SIZE", 50_000)
SELECTION_FEATURES = env_str("SELECTION_FEATURES", "vocabulary")
if SELECTION_TRAIN_SIZE < 20 or SELECTION_CHUNK_SIZE < 20:
    raise ImproperlyConfigured("SELECTION_TRAIN_SIZE and SELECTION_CHUNK_SIZE must be at least 20 items")
if SELECTION_FEATURES not in ("vocabulary", "hashing"):
    raise ImproperlyConfigured(f"SELECTION_FEATURES must be vocabulary or hashing, not {SELECTION_FEATURES!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"}},
}
