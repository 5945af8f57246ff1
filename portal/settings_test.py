"""Test overrides: same real PostgreSQL and Redis, a Redis database of its own, fast hashing."""

import os

from portal.settings import *  # noqa: F403
from portal.settings import REDIS_URL

_base_redis = REDIS_URL.rsplit("/", 1)[0] if REDIS_URL.count("/") > 2 else REDIS_URL
REDIS_URL = f"{_base_redis}/{os.environ.get('REDIS_TEST_DB', '9')}"
CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [REDIS_URL]  # noqa: F405
# Parallel test workers share the Redis database: each gets its own channel namespace.
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"portal:channels:{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"  # noqa: F405
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
