// Monitoring page: Chart.js charts per model version on a real time axis (the chosen period, one point per UTC
// hour, empty hours drawn as gaps), refreshed live; alerts swapped in over WebSocket; acknowledge through the API.
(function () {
  const script = document.currentScript;
  const slug = script.dataset.slug;
  const ackBase = script.dataset.ackUrl;
  const metricsUrl = script.dataset.metricsUrl;
  const alertsUrl = script.dataset.alertsUrl;
  const HOUR = 3600 * 1000;
  const DAY = 24 * HOUR;
  let metrics = JSON.parse(document.getElementById("field-metrics").textContent);
  const charts = (window.monitoringCharts = []);
  // Production green, canary blue, retired models in muted colours.
  const channelColours = { production: "#198754", canary: "#0d6efd" };
  const palette = ["#6f42c1", "#fd7e14", "#dc3545", "#20c997", "#6c757d"];

  function period() {
    const until = Date.parse(metrics.until);
    const since = Math.floor(Date.parse(metrics.since) / HOUR) * HOUR;
    return { since, until, span: until - since };
  }

  // Ticks on whole UTC hours (24 h) or days (7 d, 30 d), so every label falls inside the period.
  function timeTicks(scale) {
    const { since, until, span } = period();
    const step = span <= 2 * DAY ? 3 * HOUR : span <= 10 * DAY ? DAY : 5 * DAY;
    const ticks = [];
    for (let t = Math.ceil(since / step) * step; t <= until; t += step) ticks.push({ value: t });
    scale.ticks = ticks;
  }

  // 24 h: the hour, and the date at midnight; longer periods: the date (month-day).
  function tickLabel(value) {
    const iso = new Date(value).toISOString();
    if (period().span > 2 * DAY || value % DAY === 0) return iso.slice(5, 10);
    return iso.slice(11, 16);
  }

  // One value per hour of the period: hours without telemetry are null, which Chart.js draws as a gap.
  function hourly(series, field) {
    const byHour = new Map(series.map((p) => [Date.parse(p.hour), p[field]]));
    const { since, until } = period();
    const points = [];
    for (let t = since; t <= until; t += HOUR) points.push({ x: t, y: byHour.has(t) ? byHour.get(t) : null });
    return points;
  }

  function colourOf(model, i) {
    return channelColours[model.channel] || palette[i % palette.length];
  }

  function datasetsFor(spec) {
    const datasets = [];
    metrics.models.forEach((model, i) => {
      const colour = colourOf(model, i);
      const name = model.channel ? `${model.label} · ${model.channel}` : model.label;
      (spec.fields || [spec.field]).forEach((f, j) => {
        datasets.push({
          label: spec.fields ? `${name} ${spec.names[j]}` : name,
          data: hourly(model.series, f),
          borderColor: colour,
          backgroundColor: colour,
          borderDash: j ? [5, 4] : [],
          pointRadius: 2,
          spanGaps: false,
          tension: 0.2,
        });
      });
    });
    return datasets;
  }

  const specs = [
    { id: "chart-frames", title: "Frames per hour", field: "frames" },
    { id: "chart-detection-rate", title: "Detection rate (frames with a detection)", field: "detection_rate", y: { min: 0, max: 1 } },
    { id: "chart-confidence", title: "Mean top confidence", field: "mean_confidence", y: { min: 0, max: 1 } },
    { id: "chart-latency", title: "Latency p50 / p95 (ms)", fields: ["latency_p50_ms", "latency_p95_ms"], names: ["p50", "p95"] },
  ];

  function draw(spec) {
    const canvas = document.getElementById(spec.id);
    if (!canvas || typeof Chart === "undefined") return;
    const chart = new Chart(canvas, {
      type: "line",
      data: { datasets: datasetsFor(spec) },
      options: {
        animation: false,
        parsing: false,
        plugins: { title: { display: true, text: spec.title } },
        scales: {
          x: {
            type: "linear",
            min: period().since,
            max: period().until,
            afterBuildTicks: timeTicks,
            ticks: { callback: tickLabel, autoSkip: false, maxRotation: 0 },
          },
          y: spec.y || { beginAtZero: true },
        },
      },
    });
    chart.spec = spec;
    charts.push(chart);
  }

  specs.forEach(draw);

  // Live refresh: fetch the figures again (the aggregation runs every minute) and redraw in place.
  async function refresh() {
    const result = await VectorApi.request("GET", metricsUrl);
    if (!result.ok) return;
    metrics = result.body;
    charts.forEach((chart) => {
      chart.data.datasets = datasetsFor(chart.spec);
      chart.options.scales.x.min = period().since;
      chart.options.scales.x.max = period().until;
      chart.update();
    });
    const empty = document.getElementById("no-telemetry");
    if (empty) empty.hidden = metrics.models.length > 0;
    window.monitoringRefreshes = (window.monitoringRefreshes || 0) + 1;
  }
  window.monitoringRefresh = refresh;
  setInterval(refresh, 60 * 1000);

  // An alert that changed: the server renders it (one template for the page and for live updates).
  async function showAlert(id) {
    const response = await fetch(`/monitoring/alerts/${id}/fragment`, { credentials: "same-origin" });
    if (!response.ok) return;
    const holder = document.createElement("div");
    holder.innerHTML = (await response.text()).trim();
    const fresh = holder.firstElementChild;
    const list = document.getElementById("alerts");
    const empty = list.querySelector(".no-alerts");
    if (empty) empty.remove();
    const old = list.querySelector(`[data-alert-id="${id}"].alert-item`);
    if (old) old.replaceWith(fresh);
    else list.prepend(fresh);
    enhance(fresh);
  }

  async function acknowledge(id) {
    const result = await VectorApi.request("POST", `${ackBase}${id}/acknowledge`);
    if (result.ok) await showAlert(id);
  }

  // Progressive enhancement: the forms work without JavaScript; with it they acknowledge in place.
  function enhance(root) {
    root.querySelectorAll("form.ack-form").forEach((form) => {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        acknowledge(form.dataset.alertId);
      });
    });
  }
  enhance(document);

  // After the stream (re)connects: the alerts as they are now; any the page shows otherwise (new, refreshed,
  // acknowledged or resolved while it was down) is rendered again.
  const stamp = (a) => `${a.occurrences}.${a.acknowledged ? 1 : 0}.${a.resolved_at ? 1 : 0}`;
  async function syncAlerts() {
    const result = await VectorApi.request("GET", alertsUrl);
    if (!result.ok) return;
    const list = document.getElementById("alerts");
    // Oldest first, so alerts new to the page end up newest on top, as live ones do.
    for (const alert of result.body.results.slice().reverse()) {
      const shown = list.querySelector(`[data-alert-id="${alert.id}"].alert-item`);
      if (!shown || shown.dataset.alertStamp !== stamp(alert)) await showAlert(alert.id);
    }
  }

  // Exposed so a test can hand the page an event the way the WebSocket would.
  window.monitoringAlertEvent = (event, data) => {
    if (event.startsWith("alert.")) showAlert(data.id);
    if (event === "metrics.updated") refresh();
  };
  if (window.VectorEvents) {
    VectorEvents.follow(`alerts.${slug}`, window.monitoringAlertEvent, {
      resync: () => Promise.all([refresh(), syncAlerts()]),
    });
  }
})();
