"""Django settings for facecurate, read from environment variables (see facecurate/env.py).

With no environment at all the app runs embedded: SQLite at <repo>/var/db.sqlite3, Celery over
kombu's filesystem transport in <repo>/var/broker/, media in <repo>/var/media, a file cache in
<repo>/var/cache, DEBUG off and a random secret key made once in <repo>/var/secret_key.
FACECURATE_DEBUG=1 turns debugging on (never in production); FACECURATE_HTTPS=1 makes cookies secure
and turns on HSTS and the HTTPS redirect.
"""
from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .env import (
    check_broker_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_path,
    env_str,
    parse_cache_url,
    parse_database_url,
    secret_key_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent
#: Everything the embedded default writes (database, broker, media, cache, secret key).
VAR_DIR = env_path("FACECURATE_VAR_DIR", BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)
#: Where ``manage.py ensureadmin`` leaves a generated admin password (mode 0600), never in the log.
ADMIN_PASSWORD_FILE = VAR_DIR / "admin_password"

DEBUG = env_bool("FACECURATE_DEBUG", False)
# A fixed key in the environment, else a random one made once and kept (mode 0600) under var/.
SECRET_KEY = env_str("FACECURATE_SECRET_KEY") or secret_key_file(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("FACECURATE_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("FACECURATE_CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS (behind a TLS-terminating proxy that sets X-Forwarded-Proto) ---------------------------
HTTPS = env_bool("FACECURATE_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the orchestrator's probe speaks plain HTTP
SECURE_HSTS_SECONDS = env_int("FACECURATE_HSTS_SECONDS", 31_536_000, min_value=0) if HTTPS else 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
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
    "facecurate.accounts",
    "facecurate.jobs",
    "facecurate.datasets",
    "facecurate.recognition",
    "facecurate.runs",
    "facecurate.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "facecurate.middleware.RequestSizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "facecurate.urls"
# Error pages as JSON under /api/, short HTML elsewhere (see facecurate/errors.py).
CSRF_FAILURE_VIEW = "facecurate.errors.csrf_failure"
WSGI_APPLICATION = "facecurate.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
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

# --- database -----------------------------------------------------------------------------------
_db_url = env_str("FACECURATE_DATABASE_URL")
if _db_url is None:
    _db_url = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": parse_database_url(_db_url)}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Persistent connections (checked before reuse): a new PostgreSQL connection per request costs ~10 ms.
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("FACECURATE_DB_CONN_MAX_AGE", 60, min_value=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file (not shared memory) so an in-thread Celery worker sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- files --------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env_path("FACECURATE_STATIC_ROOT", VAR_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
WHITENOISE_USE_FINDERS = True  # serve static files without collectstatic in the embedded default
MEDIA_URL = "/media/"
MEDIA_ROOT = env_path("FACECURATE_MEDIA_ROOT", VAR_DIR / "media")
ARTIFACT_ROOT = env_path("FACECURATE_ARTIFACT_ROOT", VAR_DIR / "artifacts")
IMPORT_ROOT = env_path("FACECURATE_IMPORT_ROOT", VAR_DIR / "import")
if env_str("FACECURATE_IMPORT_ROOT") is None:
    IMPORT_ROOT.mkdir(parents=True, exist_ok=True)  # the README's examples import from here
SHARED_DATA = env_path("FACECURATE_SHARED_DATA", BASE_DIR.parent / "shared" / "data")
EMBEDDER_ONNX = env_path("FACECURATE_EMBEDDER_ONNX", Path(""), must_exist=True) if env_str(
    "FACECURATE_EMBEDDER_ONNX"
) else None

# --- upload limits ------------------------------------------------------------------------------
MAX_UPLOAD_MB = env_int("FACECURATE_MAX_UPLOAD_MB", 512, min_value=1)
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
#: Largest image (width x height) accepted; bigger files are rejected as decompression bombs.
MAX_IMAGE_PIXELS = env_int("FACECURATE_MAX_IMAGE_PIXELS", 40_000_000, min_value=1)
#: Largest total uncompressed size of one zip archive, and most entries in it.
MAX_ARCHIVE_MB = env_int("FACECURATE_MAX_ARCHIVE_MB", 4 * MAX_UPLOAD_MB, min_value=1)
MAX_ARCHIVE_ENTRIES = env_int("FACECURATE_MAX_ARCHIVE_ENTRIES", 100_000, min_value=1)
MAX_FILES_PER_REQUEST = env_int("FACECURATE_MAX_FILES_PER_REQUEST", 1000, min_value=1)
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_FILES_PER_REQUEST
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024  # non-file body parts
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024  # bigger uploads spool to disk

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["facecurate.accounts.permissions.ReadAnnotatorWriteStaff"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "facecurate.rest.CappedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_PARSER_CLASSES": [
        "facecurate.rest.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "facecurate.errors.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {},
}
#: Most items one page of a list may hold (?limit= above this is cut down to it).
MAX_PAGE_SIZE = env_int("FACECURATE_MAX_PAGE_SIZE", 500, min_value=1)
#: Deepest nesting of arrays and objects accepted in a JSON body (deeper: 400).
MAX_JSON_DEPTH = 64

# --- sign-in lockout ------------------------------------------------------------------------------
#: After this many failed sign-ins for one user name from one address (token endpoint, login form,
#: admin) within LOGIN_LOCKOUT_SECONDS, further attempts get 429 until the window ends.
LOGIN_MAX_FAILURES = env_int("FACECURATE_LOGIN_MAX_FAILURES", 5, min_value=1)
LOGIN_LOCKOUT_SECONDS = env_int("FACECURATE_LOGIN_LOCKOUT_SECONDS", 15 * 60, min_value=1)
AUTHENTICATION_BACKENDS = ["facecurate.accounts.lockout.LockoutModelBackend"]

# --- cache (sign-in failure counts): shared by every process of the web server --------------------
_cache_url = env_str("FACECURATE_CACHE_URL")
CACHES = {"default": parse_cache_url(_cache_url) if _cache_url else {
    "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
    "LOCATION": str(VAR_DIR / "cache"),
}}
SPECTACULAR_SETTINGS = {
    "TITLE": "facecurate API",
    "DESCRIPTION": "Curate face datasets and improve a face recognizer with clustered unlabeled faces.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
}

# --- Celery -------------------------------------------------------------------------------------
_broker = env_str("FACECURATE_BROKER_URL")
BROKER_DIR = VAR_DIR / "broker"
if _broker is None:
    for sub in ("in", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "in"),
        "data_folder_out": str(BROKER_DIR / "in"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),  # kombu's default is ./control in the cwd
        "store_processed": False,
        "polling_interval": 0.5,
    }
else:
    CELERY_BROKER_URL = check_broker_url(_broker)
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_RESULT_BACKEND = env_str("FACECURATE_RESULT_BACKEND")  # job state lives in the Job table
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_DEFAULT_QUEUE = "default"
# Queues: "default" (ingestion, detection: CPU) and "gpu" (embedding, training, clustering). A heavy
# ML task goes to "gpu" by its name: "facecurate.ml.<...>" or any task defined in a tasks_gpu module.
CELERY_TASK_ROUTES = {
    "facecurate.datasets.tasks.*": {"queue": "default"},
    "facecurate.ml.*": {"queue": "gpu"},
    "facecurate.*.tasks_gpu.*": {"queue": "gpu"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- jobs ---------------------------------------------------------------------------------------
#: A running job's worker refreshes its heartbeat this often; a job silent for JOB_STALE_SECONDS is
#: requeued by the sweeper every worker runs at start and every JOB_SWEEP_SECONDS.
JOB_HEARTBEAT_SECONDS = env_float("FACECURATE_JOB_HEARTBEAT_SECONDS", 10.0, min_value=0.05)
JOB_STALE_SECONDS = env_float("FACECURATE_JOB_STALE_SECONDS", 120.0, min_value=0.5)
JOB_SWEEP_SECONDS = env_float("FACECURATE_JOB_SWEEP_SECONDS", 30.0, min_value=0.1)
#: A job queued this long with no worker taking it has its task sent again by the sweeper (its message was
#: lost); a duplicate of a message that was only slow does nothing (claims are compare-and-set).
JOB_RESEND_SECONDS = env_float("FACECURATE_JOB_RESEND_SECONDS", 600.0, min_value=1.0)
if JOB_STALE_SECONDS <= 2 * JOB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("FACECURATE_JOB_STALE_SECONDS must exceed twice FACECURATE_JOB_HEARTBEAT_SECONDS")

# --- faces and pipeline runs --------------------------------------------------------------------
#: Faces smaller than this (shorter box side, source pixels) or scored lower by YuNet are not kept.
MIN_FACE_PX = env_int("FACECURATE_MIN_FACE_PX", 24, min_value=1)
#: Images are scaled to at most this many pixels on the long side for detection (small faces in big photos).
DETECT_MAX_SIDE = env_int("FACECURATE_DETECT_MAX_SIDE", 1600, min_value=160)
MIN_FACE_SCORE = env_float("FACECURATE_MIN_FACE_SCORE", 0.7, min_value=0.0, max_value=1.0)
#: Faces per embedding chunk (one Celery task on the "gpu" queue each; more workers finish sooner).
EMBED_CHUNK_FACES = env_int("FACECURATE_EMBED_CHUNK_FACES", 2000, min_value=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("FACECURATE_LOG_LEVEL", "INFO")},
}
