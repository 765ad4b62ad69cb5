// Error analysis on the promote page: per-class AP bars, precision-recall and F1-confidence curves and confusion
// matrices of the candidate (solid) and production (dashed), drawn from the numbers ultralytics computed.
(function () {
  const source = document.getElementById("analysis-data");
  if (!source) return;
  const data = JSON.parse(source.textContent);
  const runs = [["candidate", data.candidate, []], ["production", data.production, [6, 4]]].filter((r) => r[1]);
  const palette = ["#0d6efd", "#dc3545", "#198754", "#fd7e14", "#6f42c1", "#20c997"];
  const classes = data.candidate.names;
  const charts = {};
  charts.ap = new Chart(document.getElementById("chart-ap"), {
    type: "bar",
    data: {
      labels: classes,
      datasets: runs.map(([name, a], k) => ({
        label: `${name} AP50-95`,
        backgroundColor: k ? "#adb5bd" : "#0d6efd",
        data: classes.map((c) => { const i = a.ap_classes.indexOf(c); return i < 0 ? null : a.ap50_95[i]; }),
      })),
    },
    options: { animation: false, scales: { y: { min: 0, max: 1 } } },
  });
  const curve = (id, key, xTitle, yTitle) => new Chart(document.getElementById(id), {
    type: "line",
    data: {
      labels: data.candidate.curve_x,
      datasets: runs.flatMap(([name, a], k) => Object.entries(a[key]).map(([cls, values]) => ({
        label: `${name} ${cls}`, data: values, borderDash: runs[k][2], pointRadius: 0,
        borderColor: palette[classes.indexOf(cls) % palette.length],
      }))),
    },
    options: { animation: false, scales: { x: { type: "linear", min: 0, max: 1, title: { display: true, text: xTitle } },
      y: { min: 0, max: 1, title: { display: true, text: yTitle } } }, plugins: { legend: { labels: { boxWidth: 10 } } } },
  });
  charts.pr = curve("chart-pr", "pr", "recall", "precision");
  charts.f1 = curve("chart-f1", "f1", "confidence", "F1");
  // Confusion matrices as tables: rows predicted, columns true, the last row and column "background".
  const holder = document.getElementById("confusion-matrices");
  for (const [name, a] of runs) {
    if (!a.confusion_matrix) continue;
    const labels = [...a.names, "background"];
    const max = Math.max(1, ...a.confusion_matrix.flat());
    const col = document.createElement("div");
    col.className = "col-md-6";
    const rows = a.confusion_matrix.map((row, i) => `<tr><th>${labels[i]}</th>${row.map((v, j) =>
      `<td class="text-end" style="background: rgba(${i === j ? "25,135,84" : "220,53,69"}, ${(v / max).toFixed(2)})">${v}</td>`).join("")}</tr>`);
    col.innerHTML = `<div class="small text-muted">Confusion matrix, ${name}, predictions at confidence &gt; <span class="confusion-conf">${a.confusion_conf}</span> (rows predicted, columns true)</div>
      <table class="table table-sm table-bordered small confusion" data-model="${name}"><thead><tr><th></th>${labels.map((l) => `<th>${l}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
    holder.appendChild(col);
  }
  window.analysisCharts = charts; // for tests
})();
