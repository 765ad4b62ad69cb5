// Deployments page: follow deployments.<slug> and offer a reload when something changes.
(function () {
  const script = document.currentScript;
  const topic = script.dataset.topic;
  const banner = document.getElementById("update-banner");
  const status = document.getElementById("live-status");
  window.VectorEvents.follow(topic, (event, data) => {
    status.textContent = `last event: ${event}`;
    status.className = "badge text-bg-info";
    banner.classList.remove("d-none");
  });
})();
