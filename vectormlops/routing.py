"""All WebSocket routes: the shared event stream plus whatever each app declares in its routing.py."""

from importlib import import_module

from django.urls import path

from vectormlops.consumers import EventsConsumer

websocket_urlpatterns = [path("ws/events/<str:topic>/", EventsConsumer.as_asgi())]
for _app in ("datasets", "labeling", "training", "deployments", "monitoring"):
    try:
        websocket_urlpatterns += import_module(f"apps.{_app}.routing").websocket_urlpatterns
    except ModuleNotFoundError as exc:
        if exc.name != f"apps.{_app}.routing":
            raise
