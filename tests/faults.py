"""Helpers for fault tests: a private Valkey that this process (cache, channel layer, Celery, robot state) and the
processes a test starts all use, so a test may flush or stop it without touching a shared Redis."""

import contextlib

from vectormlops.embedded_redis import embedded_valkey


def _reset_celery_pools(app) -> None:
    """Celery's connection pools and its cached result backend are made again from the current configuration: a
    backend first made while a private Valkey was in use would otherwise keep its address after it stopped, and every
    later test that queues a task would fail on it (order-dependence)."""
    app._pool = None
    app.amqp._producer_pool = None
    app._backend_cache = None
    vars(app._local).pop("backend", None)


@contextlib.contextmanager
def private_redis(settings):
    """Start a private Valkey and point this process at it for the duration (``settings``: pytest-django's fixture,
    which puts everything back). Yields (url, server)."""
    from vectormlops.celery import app

    saved = app.conf.broker_url, app.conf.result_backend
    saved_settings = {name: getattr(settings, name) for name in ("REDIS_URL", "CACHES", "CHANNEL_LAYERS")}
    with embedded_valkey() as (url, server):
        settings.REDIS_URL = url
        settings.CACHES = {**settings.CACHES, "default": {**settings.CACHES["default"], "LOCATION": url}}
        layer = settings.CHANNEL_LAYERS["default"]
        hosts = [{**host, "address": url} if isinstance(host, dict) else url for host in layer["CONFIG"]["hosts"]]
        settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": hosts}}}
        app.conf.broker_url = app.conf.result_backend = url
        _reset_celery_pools(app)
        try:
            yield url, server
        finally:
            # Back before the Valkey stops: later teardowns (an emptied cache) must reach the usual Redis.
            for name, value in saved_settings.items():
                setattr(settings, name, value)
            app.conf.broker_url, app.conf.result_backend = saved
            _reset_celery_pools(app)
