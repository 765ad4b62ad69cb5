// Deployments page: follow deployments.<slug>; when an event says something changed, and each time the stream
// (re)connects (events sent while it was down reached nobody), fetch this page again and swap its live part in place.
(function () {
  const script = document.currentScript;
  const topic = script.dataset.topic;
  const status = document.getElementById("live-status");
  let fetching = null; // one fetch at a time; an event meanwhile asks for one more after it
  let again = false;

  // What the server rendered, without what the page did to it since: a chart sizes its canvas, a person folds and
  // unfolds decisions. Equal signatures: nothing changed, and the part on screen stays (its chart, its scroll).
  function signature(part) {
    const copy = part.cloneNode(true);
    copy.querySelectorAll("canvas").forEach((canvas) => ["width", "height", "style"].forEach((a) => canvas.removeAttribute(a)));
    copy.querySelectorAll("details").forEach((d) => d.removeAttribute("open"));
    return copy.outerHTML;
  }

  async function swap() {
    const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) return false;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("deployments-live");
    const region = document.getElementById("deployments-live");
    if (!fresh || !region) return false; // signed out meanwhile: the login page came back
    if (signature(fresh) === signature(region)) return false; // the first re-sync, usually: nothing to swap
    // Keep what the person unfolded; release the charts of the old part.
    const open = new Set([...region.querySelectorAll("details[data-decision-id]")].filter((d) => d.open).map((d) => d.dataset.decisionId));
    const closed = new Set([...region.querySelectorAll("details[data-decision-id]")].filter((d) => !d.open).map((d) => d.dataset.decisionId));
    fresh.querySelectorAll("details[data-decision-id]").forEach((d) => {
      if (open.has(d.dataset.decisionId)) d.open = true;
      if (closed.has(d.dataset.decisionId)) d.open = false;
    });
    if (window.Chart) region.querySelectorAll("canvas").forEach((canvas) => window.Chart.getChart(canvas)?.destroy());
    region.replaceWith(fresh);
    // Scripts parsed into a fragment do not run: start the part's own (the shadow chart) again.
    fresh.querySelectorAll("script").forEach((old) => {
      const run = document.createElement("script");
      [...old.attributes].forEach((a) => run.setAttribute(a.name, a.value));
      run.textContent = old.textContent;
      old.replaceWith(run);
    });
    window.deploymentsSwaps = (window.deploymentsSwaps || 0) + 1;
    return true;
  }

  function refresh() {
    if (fetching) {
      again = true;
      return fetching;
    }
    fetching = (async () => {
      do {
        again = false;
        await swap().catch(() => false);
      } while (again);
    })().finally(() => {
      fetching = null;
    });
    return fetching;
  }

  window.VectorEvents.follow(
    topic,
    (event, data) => {
      status.textContent = `updated: ${[data && data.channel, event].filter(Boolean).join(" ")}`;
      status.className = "badge text-bg-info";
      refresh();
    },
    { resync: refresh },
  );
})();
