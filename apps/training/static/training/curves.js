// Per-epoch curves of training runs, shared by the run page and the comparison page (Chart.js 4).
// An epoch is {epoch, losses: {box, cls, dfl, val_box, val_cls, val_dfl}, precision, recall, map50, map50_95, seconds}.
window.VectorCurves = (function () {
  const LOSSES = [
    { key: "box", label: "train box", color: "#dc3545" },
    { key: "cls", label: "train cls", color: "#fd7e14" },
    { key: "dfl", label: "train dfl", color: "#6f42c1" },
    { key: "val_box", label: "val box", color: "#dc3545", dash: [5, 4] },
    { key: "val_cls", label: "val cls", color: "#fd7e14", dash: [5, 4] },
    { key: "val_dfl", label: "val dfl", color: "#6f42c1", dash: [5, 4] },
  ];
  const METRICS = [
    { key: "precision", label: "precision", color: "#20c997" },
    { key: "recall", label: "recall", color: "#0dcaf0" },
    { key: "map50", label: "mAP50", color: "#0d6efd" },
    { key: "map50_95", label: "mAP50-95", color: "#198754" },
  ];
  // Everything the comparison page can plot, one chart each.
  const ALL = [
    ...METRICS.map((m) => ({ ...m, read: (e) => e[m.key] })),
    { key: "train_loss", label: "train loss (box+cls+dfl)", read: (e) => sumOf(e, "") },
    { key: "val_loss", label: "val loss (box+cls+dfl)", read: (e) => sumOf(e, "val_") },
  ];
  const PALETTE = ["#0d6efd", "#dc3545", "#198754", "#fd7e14", "#6f42c1", "#20c997", "#6c757d", "#d63384"];

  function sumOf(e, prefix) {
    const l = e.losses || {};
    const parts = ["box", "cls", "dfl"].map((k) => l[prefix + k]);
    return parts.some((v) => v === undefined || v === null) ? null : parts.reduce((s, v) => s + v, 0);
  }
  const value = (v) => (v === undefined ? null : v);

  function lineChart(canvas, datasets, labels, yTitle, yRange) {
    return new Chart(canvas, {
      type: "line",
      data: { labels, datasets },
      options: {
        animation: false,
        spanGaps: true,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { labels: { boxWidth: 12, font: { size: 11 } } } },
        scales: {
          x: { title: { display: true, text: "epoch" } },
          y: { title: { display: true, text: yTitle }, ...(yRange || {}) },
        },
      },
    });
  }

  // The run page's two charts: losses and metrics of one run, one line per series.
  function runCharts(lossCanvas, metricCanvas, epochs) {
    const labels = epochs.map((e) => e.epoch);
    const loss = lineChart(
      lossCanvas,
      LOSSES.map((s) => ({
        label: s.label, key: s.key, borderColor: s.color, backgroundColor: s.color, borderDash: s.dash, tension: 0.2,
        data: epochs.map((e) => value((e.losses || {})[s.key])),
      })),
      [...labels], "loss",
    );
    const metrics = lineChart(
      metricCanvas,
      METRICS.map((s) => ({
        label: s.label, key: s.key, borderColor: s.color, backgroundColor: s.color, tension: 0.2,
        data: epochs.map((e) => value(e[s.key])),
      })),
      [...labels], "value", { min: 0, max: 1 },
    );
    return { loss, metrics };
  }

  // Put one epoch into a run chart (replacing it when the epoch is already there).
  function addEpoch(charts, e) {
    const pairs = [[charts.loss, (s) => value((e.losses || {})[s.key])], [charts.metrics, (s) => value(e[s.key])]];
    for (const [chart, read] of pairs) {
      let i = chart.data.labels.indexOf(e.epoch);
      if (i < 0) {
        chart.data.labels.push(e.epoch);
        chart.data.datasets.forEach((d) => d.data.push(null));
        i = chart.data.labels.length - 1;
      }
      chart.data.datasets.forEach((d) => { d.data[i] = read(d); });
      chart.update();
    }
  }

  // The comparison page: one chart per series in ALL, one line per run.
  function overlay(container, runs) {
    const maxEpoch = Math.max(0, ...runs.flatMap((r) => r.epochs.map((e) => e.epoch)));
    const labels = Array.from({ length: maxEpoch }, (_, i) => i + 1);
    const charts = {};
    for (const series of ALL) {
      const col = document.createElement("div");
      col.className = "col-md-6";
      col.innerHTML = `<div class="card"><div class="card-body"><div class="small text-muted mb-1">${series.label}</div><canvas height="170"></canvas></div></div>`;
      container.appendChild(col);
      const datasets = runs.map((r, k) => {
        const byEpoch = new Map(r.epochs.map((e) => [e.epoch, series.read(e)]));
        const color = PALETTE[k % PALETTE.length];
        return { label: r.label, borderColor: color, backgroundColor: color, tension: 0.2,
          data: labels.map((n) => value(byEpoch.get(n))) };
      });
      const range = series.key.endsWith("loss") ? undefined : { min: 0, max: 1 };
      charts[series.key] = lineChart(col.querySelector("canvas"), datasets, labels, series.label, range);
    }
    return charts;
  }

  return { LOSSES, METRICS, ALL, runCharts, addEpoch, overlay };
})();
