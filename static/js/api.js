// Every page script talks to the server through this helper: same-origin cookies, Django's CSRF token, JSON in and
// out, and the API's error envelope {"error": {"code", "message", "details"}} read in one place.
// Usage: const r = await VectorApi.request("POST", url, { body: {...} }); if (!r.ok) show(VectorApi.errorText(r));
window.VectorApi = {
  csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  },

  // Resolves to {ok, status, body}: body is the parsed JSON answer, or null (204, or not JSON).
  async request(method, url, { body, keepalive = false } = {}) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRFToken"] = this.csrfToken();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      keepalive,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { /* 204 or not JSON */ }
    return { ok: response.ok, status: response.status, body: data };
  },

  // The envelope's message, else `fallback(status)` (default: "The server answered <status>.").
  errorText(result, fallback = (status) => `The server answered ${status}.`) {
    return result.body && result.body.error ? result.body.error.message : fallback(result.status);
  },
};
