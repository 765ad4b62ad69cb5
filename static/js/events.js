// Follow a topic of the shared event stream (/ws/events/<topic>/), reconnecting with backoff. Every handler of a
// topic on the page shares one socket.
// Usage: VectorEvents.follow("run.12", (event, data) => { ... });
window.VectorEvents = {
  handlers: new Map(),
  follow(topic, onEvent) {
    if (this.handlers.has(topic)) {
      this.handlers.get(topic).push(onEvent);
      return;
    }
    const handlers = [onEvent];
    this.handlers.set(topic, handlers);
    let delay = 500;
    const connect = () => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${location.host}/ws/events/${topic}/`);
      socket.onopen = () => { delay = 500; };
      socket.onmessage = (msg) => {
        const body = JSON.parse(msg.data);
        if (body.event) handlers.forEach((handler) => handler(body.event, body.data));
      };
      socket.onclose = () => { setTimeout(connect, delay); delay = Math.min(delay * 2, 15000); };
    };
    connect();
  },
};
