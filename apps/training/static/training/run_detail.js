// Run page: a loss/mAP chart per epoch that grows as "epoch" events arrive on topic run.<id>,
// the log tail, and the status badge. A terminal status reloads the page to show the final metrics and model.
(function () {
  const meta = document.getElementById("run-meta");
  const runId = meta.dataset.runId;
  const totalEpochs = meta.dataset.epochs;
  const statusClasses = JSON.parse(document.getElementById("status-classes").textContent);
  const epochs = JSON.parse(document.getElementById("run-epochs").textContent);
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  const lossOf = (e) => (e.losses ? ["box", "cls", "dfl"].reduce((s, k) => s + (e.losses[k] || 0), 0) : null);
  const chart = new Chart(document.getElementById("run-chart"), {
    type: "line",
    data: {
      labels: epochs.map((e) => e.epoch),
      datasets: [
        { label: "train loss (box+cls+dfl)", data: epochs.map(lossOf), yAxisID: "loss", borderColor: "#dc3545", tension: 0.2 },
        { label: "mAP50", data: epochs.map((e) => e.map50), yAxisID: "map", borderColor: "#0d6efd", tension: 0.2 },
        { label: "mAP50-95", data: epochs.map((e) => e.map50_95), yAxisID: "map", borderColor: "#198754", tension: 0.2 },
      ],
    },
    options: {
      animation: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        loss: { type: "linear", position: "left", title: { display: true, text: "loss" } },
        map: { type: "linear", position: "right", min: 0, max: 1, grid: { drawOnChartArea: false }, title: { display: true, text: "mAP" } },
        x: { title: { display: true, text: "epoch" } },
      },
    },
  });
  window.runChart = chart; // for tests and debugging

  const setStatus = (status) => {
    const badge = document.getElementById("run-status");
    badge.textContent = status;
    badge.className = `badge fs-6 text-bg-${statusClasses[status] || "secondary"}`;
  };
  const logBox = document.getElementById("run-log");
  const setLog = (text) => {
    const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
    logBox.textContent = text;
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
  };
  logBox.scrollTop = logBox.scrollHeight;

  const onEvent = (event, data) => {
    if (event === "epoch") {
      const i = chart.data.labels.indexOf(data.epoch);
      const values = [lossOf(data), data.map50, data.map50_95];
      if (i >= 0) chart.data.datasets.forEach((d, k) => { d.data[i] = values[k]; });
      else {
        chart.data.labels.push(data.epoch);
        chart.data.datasets.forEach((d, k) => d.data.push(values[k]));
      }
      chart.update();
      document.getElementById("run-progress").textContent = `${data.epoch} / ${data.epochs || totalEpochs} epochs`;
      if (data.log_tail) setLog(data.log_tail);
      setStatus("training");
    } else if (event === "status") {
      setStatus(data.status);
      if (data.cancel_requested) document.getElementById("run-cancelling").classList.remove("d-none");
      if (TERMINAL.includes(data.status)) setTimeout(() => location.reload(), 300);
    }
  };
  window.runEvents = onEvent; // for tests and debugging
  if (meta.dataset.active === "1") VectorEvents.follow(`run.${runId}`, onEvent);
})();
