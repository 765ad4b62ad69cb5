// Follow a topic of the shared event stream (/ws/events/<topic>/), reconnecting with backoff. Every handler of a
// topic on the page shares one socket.
// Usage: VectorEvents.follow("run.12", (event, data) => { ... }, { resync: async () => { ...fetch and redraw... } });
// Nothing is lost across a reconnect: each time the socket opens (the first time too: the page was rendered before),
// every "resync" of the topic fetches the current state while the events that arrive meanwhile are held, then those
// are applied on top (handlers must tolerate an event the fetched state already holds).
// A page's connection badge (#live-status, or any [data-events-status]) says whether the stream is connected: green
// "live updates: connected" as soon as a socket opens (not only after the first event), yellow while reconnecting.
// A page script may write its own text into it afterwards (the last event, say); a later open or close overwrites it.
window.VectorEvents = {
  topics: new Map(),
  showConnection(connected) {
    document.querySelectorAll("#live-status, [data-events-status]").forEach((badge) => {
      badge.textContent = connected ? "live updates: connected" : "live updates: reconnecting…";
      badge.className = `badge ${connected ? "text-bg-success" : "text-bg-warning"}`;
      badge.dataset.connected = connected ? "true" : "false";
    });
  },
  handlers: new Map(), // topic -> its handlers (tests hand events to them directly)
  follow(topic, onEvent, { resync } = {}) {
    const known = this.topics.get(topic);
    if (known) {
      known.handlers.push(onEvent);
      if (resync) {
        known.resyncs.push(resync);
        if (known.open) known.sync([resync]);
      }
      return;
    }
    const state = { handlers: [onEvent], resyncs: resync ? [resync] : [], open: false, held: null, opens: 0, closes: [], synced: 0 };
    this.topics.set(topic, state);
    this.handlers.set(topic, state.handlers);
    const deliver = (body) => state.handlers.forEach((handler) => handler(body.event, body.data));
    state.sync = async (resyncs) => {
      if (!resyncs.length) return;
      state.held = state.held || [];
      state.syncing = (state.syncing || 0) + 1;
      await Promise.allSettled(resyncs.map((fn) => Promise.resolve().then(fn)));
      state.syncing -= 1;
      if (state.syncing) return; // another re-sync (a second reconnect) is still fetching: it delivers
      const held = state.held;
      state.held = null;
      held.forEach(deliver);
      state.synced += 1;
    };
    let delay = 500;
    const connect = () => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${location.host}/ws/events/${topic}/`);
      socket.onopen = () => {
        delay = 500;
        state.open = true;
        state.opens += 1;
        window.VectorEvents.showConnection(true);
        state.sync(state.resyncs);
      };
      socket.onmessage = (msg) => {
        const body = JSON.parse(msg.data);
        if (!body.event) return;
        if (state.held) state.held.push(body);
        else deliver(body);
      };
      socket.onclose = (closed) => {
        state.open = false;
        state.closes.push(closed.code);
        if (![...window.VectorEvents.topics.values()].some((other) => other.open)) window.VectorEvents.showConnection(false);
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 15000);
      };
    };
    connect();
  },
  // How often a topic's socket has opened (1 = never reconnected), and the codes it was closed with: for tests.
  opens(topic) {
    const state = this.topics.get(topic);
    return state ? state.opens : 0;
  },
  closes(topic) {
    const state = this.topics.get(topic);
    return state ? state.closes : [];
  },
  // How many re-syncs of a topic have fetched their state and applied the events held meanwhile: for tests.
  synced(topic) {
    const state = this.topics.get(topic);
    return state ? state.synced : 0;
  },
};
