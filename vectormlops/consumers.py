"""The shared event stream: a signed-in person follows one topic; robots and anonymous users are refused."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from vectormlops.events import topic_group


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
