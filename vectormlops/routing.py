"""WebSocket routes: the one shared event stream; apps publish to it through vectormlops.events."""

from django.urls import path

from vectormlops.consumers import EventsConsumer

websocket_urlpatterns = [path("ws/events/<str:topic>/", EventsConsumer.as_asgi())]
