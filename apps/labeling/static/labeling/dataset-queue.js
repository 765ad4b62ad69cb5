// The dataset page's "Labeling now" card (installed by the labeling app): queue counts and who works on which
// image, first from the queue endpoint, then live from the dataset's event topic ("queue" and "claim" events).
(function () {
  "use strict";
  const card = document.getElementById("labeling-live");
  const slugNode = document.getElementById("dataset-slug");
  if (!card || !slugNode) return;
  const slug = JSON.parse(slugNode.textContent);
  const claims = new Map();

  function showCounts(counts) {
    card.querySelectorAll("[data-count]").forEach((node) => {
      node.textContent = String(counts[node.dataset.count] ?? 0);
    });
  }
  function showClaims() {
    const who = document.getElementById("labeling-who");
    who.replaceChildren(...[...claims].map(([imageId, user]) => {
      const item = document.createElement("li");
      item.textContent = `${user} on image ${imageId}`;
      return item;
    }));
  }

  const load = () => VectorApi.request("GET", `/api/v1/labeling/datasets/${encodeURIComponent(slug)}/queue`)
    .then((result) => (result.ok ? result.body : null));
  function show(body) {
    showCounts(body.counts);
    claims.clear();
    body.claims.forEach((claim) => claims.set(claim.image_id, claim.user));
    showClaims();
  }

  load().then((body) => {
    if (!body) return; // no labeling app, or no annotator role: the card stays hidden
    show(body);
    card.classList.remove("d-none");
    if (!window.VectorEvents) return;
    window.VectorEvents.follow(`dataset.${slug}`, (event, data) => {
      if (event === "queue") showCounts(data);
      if (event === "claim") {
        if (data.user) claims.set(data.image_id, data.user); else claims.delete(data.image_id);
        showClaims();
      }
    }, { resync: () => load().then((fresh) => fresh && show(fresh)) }); // after a reconnect: counts and claims now
  });
})();
