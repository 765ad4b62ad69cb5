"""The shared event stream: a signed-in person with the topic's role follows one topic; others are refused."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from vectormlops.events import topic_group
from vectormlops.permissions import ANNOTATOR, ML_ENGINEER, has_role

# Who may follow a topic, by its prefix; anything not listed needs the highest role (fail closed).
TOPIC_ROLES = {
    "dataset": ANNOTATOR,
    "image": ANNOTATOR,
    "run": ML_ENGINEER,
    "deployments": ML_ENGINEER,
    "alerts": ML_ENGINEER,
}


def topic_role(topic: str) -> str:
    return TOPIC_ROLES.get(topic.split(".", 1)[0], ML_ENGINEER)


class EventsConsumer(AsyncJsonWebsocketConsumer):
    """Forwards every event published on the topic in the URL."""

    async def connect(self):
        user = self.scope.get("user")
        topic = self.scope["url_route"]["kwargs"]["topic"]
        try:
            self.group = topic_group(topic)
        except ValueError:
            await self.close(code=4400)
            return
        if not user or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(has_role)(user, topic_role(topic)):
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # Clients only listen; a ping keeps proxies from closing idle sockets.
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def topic_event(self, message):
        await self.send_json({"topic": message["topic"], "event": message["event"], "data": message["data"]})
