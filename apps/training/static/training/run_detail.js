// Run page: loss and metric charts per epoch, a readable epoch table and an estimate of the time left, all growing as
// "epoch" events arrive on topic run.<id>; the raw log tail; the status badge. A terminal status reloads the page to
// show the final metrics and the model.
(function () {
  const meta = document.getElementById("run-meta");
  const runId = meta.dataset.runId;
  const totalEpochs = Number(meta.dataset.epochs);
  const active = meta.dataset.active === "1";
  const statusClasses = JSON.parse(document.getElementById("status-classes").textContent);
  const epochs = JSON.parse(document.getElementById("run-epochs").textContent);
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  const charts = VectorCurves.runCharts(document.getElementById("loss-chart"), document.getElementById("metric-chart"), epochs);
  window.runCharts = charts; // for tests and debugging

  const fixed = (v, digits) => (v === null || v === undefined ? "" : Number(v).toFixed(digits));
  const tbody = document.querySelector("#epoch-table tbody");
  const rowOf = (e) => {
    const l = e.losses || {};
    const cells = [e.epoch, fixed(l.box, 4), fixed(l.cls, 4), fixed(l.dfl, 4), fixed(l.val_box, 4), fixed(l.val_cls, 4),
      fixed(l.val_dfl, 4), fixed(e.precision, 3), fixed(e.recall, 3), fixed(e.map50, 3), fixed(e.map50_95, 3), fixed(e.seconds, 1)];
    const tr = document.createElement("tr");
    tr.dataset.epoch = e.epoch;
    cells.forEach((c) => { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); });
    return tr;
  };
  const putRow = (e) => {
    const old = tbody.querySelector(`tr[data-epoch="${e.epoch}"]`);
    if (old) old.replaceWith(rowOf(e));
    else tbody.appendChild(rowOf(e));
  };
  epochs.forEach(putRow);

  // Time left: the mean pace of the finished epochs times the epochs still to go (early stopping may end it sooner).
  const seconds = new Map(epochs.map((e) => [e.epoch, e.seconds]));
  const eta = document.getElementById("run-eta");
  const showEta = (total) => {
    const done = [...seconds.values()].filter((s) => s);
    if (!active || !done.length) { eta.textContent = ""; return; }
    const left = Math.max(total - seconds.size, 0) * done.reduce((a, b) => a + b, 0) / done.length;
    eta.textContent = left < 90 ? `about ${Math.round(left)} s left` : `about ${Math.round(left / 60)} min left`;
  };
  showEta(totalEpochs);

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

  // The side table's live cells (started, heartbeat, attempts, worker ...) from the run as the API gives it.
  const fetchRun = async () => {
    const response = await fetch(`/api/v1/training-runs/${runId}`, { credentials: "same-origin" });
    return response.ok ? response.json() : null;
  };
  const showRun = (run) => {
    document.querySelectorAll("[data-run-field]").forEach((cell) => {
      const value = run[cell.dataset.runField];
      cell.textContent = value === null || value === undefined ? "" : String(value).replace("T", " ").slice(0, 19);
    });
  };
  const showStatus = (data) => {
    setStatus(data.status);
    if (data.cancel_requested) document.getElementById("run-cancelling").classList.remove("d-none");
    if (TERMINAL.includes(data.status)) setTimeout(() => location.reload(), 300);
  };

  const onEvent = (event, data) => {
    if (event === "epoch") {
      VectorCurves.addEpoch(charts, data);
      putRow(data);
      seconds.set(data.epoch, data.seconds);
      const total = data.epochs || totalEpochs;
      document.getElementById("run-progress").textContent = `${data.epoch} / ${total} epochs`;
      showEta(total);
      if (data.log_tail) setLog(data.log_tail);
      setStatus("training");
    } else if (event === "status") {
      showStatus(data);
      fetchRun().then((run) => run && showRun(run)); // a new attempt, worker or start time: rare, so fetched
    }
  };
  window.runEvents = onEvent; // for tests and debugging
  // After every (re)connect: the run as it is now (epochs missed while disconnected, its status), then live events.
  const resync = async () => {
    const run = await fetchRun();
    if (!run) return;
    run.epoch_metrics.forEach((e) => onEvent("epoch", { ...e, epochs: run.epochs }));
    if (run.log_tail) setLog(run.log_tail);
    showRun(run);
    showStatus({ status: run.status, cancel_requested: run.cancel_requested });
  };
  window.runResync = resync; // for tests and debugging
  if (active) VectorEvents.follow(`run.${runId}`, onEvent, { resync });
})();
