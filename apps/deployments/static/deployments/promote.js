// Promote page: while the verdict against the production model live now is being computed, wait for the "gate"
// event of this model on the dataset's deployments topic and reload to show it.
(function () {
  const box = document.getElementById("gate-computing");
  if (!box) return;
  const modelId = Number(box.dataset.modelId);
  const onEvent = (event, data) => {
    if (event === "gate" && Number(data.model_id) === modelId) location.reload();
  };
  window.promoteEvents = onEvent; // for tests
  VectorEvents.follow(`deployments.${box.dataset.dataset}`, onEvent);
})();
