"""VectorMLOps settings: everything comes from the environment (12-factor), read here and nowhere else."""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VECTORMLOPS_VAR_DIR", BASE_DIR / "var"))

env = environ.Env()
# `make run` records what it made up (the installation's secret, the embedded Valkey's URL) in var/run.env, so that
# `python manage.py ...` from the checkout uses the same secret, database, Redis and media; the environment wins.
RUN_ENV_FILE = VAR_DIR / "run.env"
if RUN_ENV_FILE.is_file():
    environ.Env.read_env(RUN_ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
SECRET_KEY_MIN_LENGTH = 50  # what `manage.py check --deploy` asks for
if not DEBUG:
    # Fail at start-up, never run production with a missing or guessable key.
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (set SECRET_KEY in the environment, or start `make run` once: "
            "it records the installation's key in var/run.env)."
        )
    if len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH:
        raise ImproperlyConfigured(
            f"SECRET_KEY must be at least {SECRET_KEY_MIN_LENGTH} characters when DEBUG is off "
            "(generate one: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
elif not SECRET_KEY:
    SECRET_KEY = "insecure-development-key-only-used-with-debug-on"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from static files: the docs work offline
    "django_celery_beat",
    "channels",
    "vectormlops",
    "apps.datasets",
    "apps.labeling",
    "apps.training",
    "apps.deployments",
    "apps.monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "vectormlops.inputs.ApiInputBoundsMiddleware",  # path ids and query values bounded before any view
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "vectormlops.urls"
WSGI_APPLICATION = "vectormlops.wsgi.application"
ASGI_APPLICATION = "vectormlops.asgi.application"

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
                "vectormlops.navigation.navigation",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------------


def _database_from_env():
    url = env.str("DATABASE_URL", default="")
    if not url:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{VAR_DIR / 'vectormlops.sqlite3'}"
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ImproperlyConfigured(f"DATABASE_URL is malformed ({exc}): {url!r}") from exc
    if not config.get("ENGINE") or not config.get("NAME"):
        raise ImproperlyConfigured(f"DATABASE_URL is malformed (no engine or database name): {url!r}")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets the web server read while a worker writes; IMMEDIATE avoids lock-upgrade deadlocks.
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
        # A file (not :memory:) so worker subprocesses in tests see the same test database; TEST_DB_SUFFIX lets
        # several test runs share one checkout without sharing a database.
        suffix = env.str("TEST_DB_SUFFIX", default="")
        config["TEST"] = {"NAME": str(VAR_DIR / f"test-vectormlops{suffix}.sqlite3")}
    else:
        config.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
        config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASES = {"default": _database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache, channel layer ----------------------------------------------------------


def _redis_from_env():
    url = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss", "unix") or (parsed.scheme != "unix" and not parsed.hostname):
        raise ImproperlyConfigured(f"REDIS_URL is malformed (expected redis://host:port/db): {url!r}")
    try:
        parsed.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError as exc:
        raise ImproperlyConfigured(f"REDIS_URL is malformed ({exc}): {url!r}") from exc
    return url


REDIS_URL = _redis_from_env()
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="vectormlops")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # A socket timeout well over channels_redis' 5 s blocking read: redis-py's 5 s default met it and closed every
        # idle WebSocket with 1011; 30 s still finds a silently dropped connection.
        # capacity: every consumer of one web process shares that process's queue in Redis, and channels_redis
        # drops (silently) what a full queue refuses; its default of 100 lost most events of a burst to a few dozen
        # open pages. Queued messages still expire after 60 s.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_keepalive": True}],
            "prefix": f"{CACHE_KEY_PREFIX}:asgi",
            "capacity": 20_000,
        },
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # Exact names win over the pattern: the light schedule and sweep tasks must not wait behind a training.
    "apps.training.tasks.retrain_schedule_task": {"queue": "default"},
    "apps.training.tasks.training_runs_sweep_task": {"queue": "default"},
    "apps.training.tasks.*": {"queue": "training"},
}
CELERY_TASK_ACKS_LATE = True  # a killed worker's task is redelivered, not lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- storage --------------------------------------------------------------------------------------

MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"  # never served directly: images go through permission-checked views
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns at start-up without it
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # works without collectstatic in development and tests

AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default=None)
    AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default=None)
    AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default=None)
    AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default=None)
    AWS_DEFAULT_ACL = None
    AWS_S3_FILE_OVERWRITE = False
    AWS_QUERYSTRING_AUTH = True
    DEFAULT_STORAGE = {"BACKEND": "storages.backends.s3.S3Storage"}
else:
    DEFAULT_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- uploads and images ---------------------------------------------------------------------------

MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
MAX_IMAGE_PIXELS = env.int("MAX_IMAGE_PIXELS", default=40_000_000)
MAX_IMPORT_UNCOMPRESSED_BYTES = env.int("MAX_IMPORT_UNCOMPRESSED_BYTES", default=2 * 1024**3)
IMPORT_TIME_LIMIT_S = env.int("IMPORT_TIME_LIMIT_S", default=1800)  # one import, unpacking included
IMPORT_HEARTBEAT_S = env.int("IMPORT_HEARTBEAT_S", default=10)  # a running import beats its job row this often
IMPORT_HEARTBEAT_TIMEOUT_S = env.int("IMPORT_HEARTBEAT_TIMEOUT_S", default=120)  # silence: the sweeper fails the job
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # bigger uploads spool to a temp file, not RAM

# --- ultralytics: offline and inside the project ---------------------------------------------------

ULTRALYTICS_DIR = VAR_DIR / "ultralytics"
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ULTRALYTICS_DIR))
TRAINING_DIR = Path(env.str("TRAINING_DIR", default=str(VAR_DIR / "training")))
TRAINING_HEARTBEAT_S = env.int("TRAINING_HEARTBEAT_S", default=10)  # a training worker beats its run row this often
TRAINING_HEARTBEAT_TIMEOUT_S = env.int("TRAINING_HEARTBEAT_TIMEOUT_S", default=120)  # silence: the sweeper takes over
TRAINING_MAX_ATTEMPTS = env.int("TRAINING_MAX_ATTEMPTS", default=2)  # first start + re-queues after a lost worker
# A queued run whose message is in no queue after this long lost it (Redis flushed): the sweeper publishes it again.
TRAINING_QUEUED_GRACE_S = env.int("TRAINING_QUEUED_GRACE_S", default=60)

# --- robots ---------------------------------------------------------------------------------------

ROBOT_ENROLLMENT_KEY = env.str("ROBOT_ENROLLMENT_KEY", default="")
if ROBOT_ENROLLMENT_KEY and len(ROBOT_ENROLLMENT_KEY) < 24:
    raise ImproperlyConfigured("ROBOT_ENROLLMENT_KEY needs at least 24 characters (unset it to turn enrolment off).")
ROBOT_POLL_AFTER_S = env.int("ROBOT_POLL_AFTER_S", default=60)
# How late a web process may answer a deployment or robot-token change (apps.deployments.robotstate). Set here only:
# the fault tests and bench/poll.py measure this value.
ROBOT_STATE_MAX_STALENESS_S = 2.0

# --- monitoring -----------------------------------------------------------------------------------

MONITORING_RAW_RETENTION_DAYS = env.int("MONITORING_RAW_RETENTION_DAYS", default=14)  # raw telemetry kept
MONITORING_DRIFT_REPORT_RETENTION_DAYS = env.int("MONITORING_DRIFT_REPORT_RETENTION_DAYS", default=90)
MONITORING_AGGREGATION_LAG_S = env.int("MONITORING_AGGREGATION_LAG_S", default=30)  # let open inserts commit
MONITORING_DRIFT_WINDOW_HOURS = env.int("MONITORING_DRIFT_WINDOW_HOURS", default=24)
MONITORING_DRIFT_MIN_SAMPLES = env.int("MONITORING_DRIFT_MIN_SAMPLES", default=30)
MONITORING_DRIFT_PSI_THRESHOLD = env.float("MONITORING_DRIFT_PSI_THRESHOLD", default=0.2)
MONITORING_DRIFT_P_VALUE = env.float("MONITORING_DRIFT_P_VALUE", default=0.05)
MONITORING_DRIFT_LABEL_SAMPLE = env.int("MONITORING_DRIFT_LABEL_SAMPLE", default=20)

# Notifications (apps.monitoring): e-mail through Django's mail backend (the console by default; set EMAIL_BACKEND
# and EMAIL_HOST/EMAIL_PORT/EMAIL_HOST_USER/EMAIL_HOST_PASSWORD/EMAIL_USE_TLS for SMTP), webhooks retried with
# exponential backoff. SITE_URL makes the links in them absolute.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="vectormlops@localhost")
NOTIFICATION_ATTEMPTS = env.int("NOTIFICATION_ATTEMPTS", default=6)
NOTIFICATION_RETRY_DELAY_S = env.float("NOTIFICATION_RETRY_DELAY_S", default=30.0)  # doubles after each failure

# --- auth, API ------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    # Robot bearer tokens first: its WWW-Authenticate header makes unauthenticated calls 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.deployments.authentication.RobotTokenAuthentication",
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["vectormlops.permissions.IsPerson"],
    "EXCEPTION_HANDLER": "vectormlops.errors.api_exception_handler",
    # JSON and form bodies bounded (depth, numbers, text) before they reach a serializer or the database
    "DEFAULT_PARSER_CLASSES": [
        "vectormlops.inputs.BoundedJSONParser",
        "vectormlops.inputs.BoundedFormParser",
        "vectormlops.inputs.BoundedMultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "vectormlops.schema.ApiAutoSchema",  # documents every error status
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_RATES": {"robot": env.str("ROBOT_THROTTLE_RATE", default="600/min")},
    # How many proxies (nginx: 1) stand in front and append to X-Forwarded-For: the per-address limits (unknown
    # tokens, enrolment keys) count the address the first trusted proxy saw. 0: REMOTE_ADDR, the header ignored.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "VectorMLOps API",
    "DESCRIPTION": "Robot-facing and automation API (v1). See shared/API.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `status`; the image's gets a stable name instead of a hash-suffixed one.
    "ENUM_NAME_OVERRIDES": {
        "ImageStatusEnum": "apps.datasets.models.Image.Status",
        # two models have a `channel`: a deployment's and a notification rule's
        "DeploymentChannelEnum": "apps.deployments.models.Deployment.Channel",
        "NotificationChannelEnum": "apps.monitoring.models.NotificationRule.Channel",
    },
}

# People's API tokens (django-rest-knox): only a digest is stored, the key is shown once; the header stays
# `Authorization: Token <key>` (shared/API.md). API_TOKEN_TTL_DAYS: the default lifetime, 0 = no expiry.
_api_token_ttl_days = env.int("API_TOKEN_TTL_DAYS", default=0)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_TTL": timedelta(days=_api_token_ttl_days) if _api_token_ttl_days > 0 else None,
    "AUTO_REFRESH": False,  # an expiry date means what it says
}

HEALTHZ_CACHE_S = env.float("HEALTHZ_CACHE_S", default=5.0)  # /healthz's database and Redis answer is this old at most

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- transport security ---------------------------------------------------------------------------
# In production nginx terminates TLS (deploy/nginx.conf), redirects HTTP to HTTPS and says which scheme the
# client used in X-Forwarded-Proto; only nginx can reach gunicorn and daphne, so that header can be trusted.

SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # SECURE_COOKIES=0 only for plain HTTP on loopback (`make run`); browsers refuse Secure cookies elsewhere.
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # nginx already redirects HTTP
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)  # 31536000 once HTTPS works for good
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"plain_forbidden": {"()": "vectormlops.log_filters.PlainForbidden"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["plain_forbidden"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
