// Monitoring page: Chart.js charts per model version, live alerts over WebSocket, acknowledge through the API.
(function () {
  const script = document.currentScript;
  const slug = script.dataset.slug;
  const ackBase = script.dataset.ackUrl;
  const metrics = JSON.parse(document.getElementById("field-metrics").textContent);
  const charts = (window.monitoringCharts = []);
  const palette = ["#0d6efd", "#dc3545", "#198754", "#fd7e14", "#6f42c1", "#20c997", "#6c757d"];

  function chart(id, title, field, options = {}) {
    const canvas = document.getElementById(id);
    if (!canvas || typeof Chart === "undefined") return;
    const datasets = [];
    metrics.models.forEach((model, i) => {
      const colour = palette[i % palette.length];
      (options.fields || [field]).forEach((f, j) => {
        datasets.push({
          label: options.fields ? `${model.label} ${options.names[j]}` : model.label,
          data: model.series.filter((p) => p[f] !== null).map((p) => ({ x: Date.parse(p.hour), y: p[f] })),
          borderColor: colour,
          backgroundColor: colour,
          borderDash: j ? [5, 4] : [],
          pointRadius: 2,
          tension: 0.2,
        });
      });
    });
    const drawn = new Chart(canvas, {
      type: "line",
      data: { datasets },
      options: {
        animation: false,
        parsing: false,
        plugins: { title: { display: true, text: title } },
        scales: {
          x: {
            type: "linear",
            ticks: { callback: (v) => new Date(v).toISOString().slice(5, 13).replace("T", " ") + "h" },
          },
          y: options.y || { beginAtZero: true },
        },
      },
    });
    charts.push(drawn);
  }

  chart("chart-frames", "Frames per hour", "frames");
  chart("chart-detection-rate", "Detection rate (frames with a detection)", "detection_rate", { y: { min: 0, max: 1 } });
  chart("chart-confidence", "Mean top confidence", "mean_confidence", { y: { min: 0, max: 1 } });
  chart("chart-latency", "Latency p50 / p95 (ms)", null, {
    fields: ["latency_p50_ms", "latency_p95_ms"],
    names: ["p50", "p95"],
  });

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function fmt(value) {
    return value === null || value === undefined ? "" : Number(value).toFixed(3);
  }

  function acknowledgedCell(alert) {
    return cell(`acknowledged${alert.acknowledged_by ? " by " + alert.acknowledged_by : ""}`, "small text-muted text-end");
  }

  function renderAlert(alert) {
    const tbody = document.querySelector("#alerts tbody");
    const empty = tbody.querySelector(".no-alerts");
    if (empty) empty.remove();
    let row = tbody.querySelector(`tr[data-alert-id="${alert.id}"]`);
    const fresh = !row;
    if (fresh) {
      row = document.createElement("tr");
      row.dataset.alertId = alert.id;
    }
    row.replaceChildren();
    row.className = alert.acknowledged ? "" : "table-warning";
    const kind = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = `badge ${alert.kind === "canary" ? "text-bg-danger" : "text-bg-warning"}`;
    badge.textContent = alert.kind;
    kind.append(badge);
    row.append(
      kind,
      cell(alert.scope),
      cell(alert.message, "small"),
      cell(`${fmt(alert.value)} / ${fmt(alert.threshold)}`, "small"),
      cell(alert.first_seen.slice(0, 16).replace("T", " "), "small"),
      cell(alert.last_seen.slice(0, 16).replace("T", " ") + (alert.occurrences > 1 ? ` (${alert.occurrences}×)` : ""), "small"),
    );
    if (alert.acknowledged) {
      row.append(acknowledgedCell(alert));
    } else {
      const td = document.createElement("td");
      td.className = "text-end";
      const button = document.createElement("button");
      button.className = "btn btn-sm btn-outline-secondary ack-button";
      button.type = "button";
      button.textContent = "Acknowledge";
      button.addEventListener("click", () => acknowledge(alert.id));
      td.append(button);
      row.append(td);
    }
    if (fresh) tbody.prepend(row);
  }

  async function acknowledge(id) {
    const result = await VectorApi.request("POST", `${ackBase}${id}/acknowledge`);
    if (result.ok) renderAlert(result.body);
  }

  // Progressive enhancement: the forms work without JavaScript; with it they acknowledge in place.
  document.querySelectorAll("form.ack-form").forEach((form) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      acknowledge(form.dataset.alertId);
    });
  });

  // Exposed so a test can hand the page an event the way the WebSocket would.
  window.monitoringAlertEvent = (event, data) => {
    if (event.startsWith("alert.")) renderAlert(data);
  };
  if (window.VectorEvents) VectorEvents.follow(`alerts.${slug}`, window.monitoringAlertEvent);
})();
