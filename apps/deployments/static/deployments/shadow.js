// Shadow panel: agreement and both models' detection rates per hour on a time axis (Chart.js, vendored).
(function () {
  const data = JSON.parse(document.getElementById("shadow-series").textContent);
  const canvas = document.getElementById("shadow-chart");
  if (!canvas || !window.Chart) return;
  const percent = (value) => (value === null || value === undefined ? null : Math.round(value * 1000) / 10);
  new window.Chart(canvas, {
    type: "line",
    data: {
      labels: data.series.map((row) => row.hour.slice(0, 13).replace("T", " ") + "h"),
      datasets: [
        { label: "agreement %", data: data.series.map((r) => percent(r.agreement)), borderColor: "#6f42c1" },
        { label: "live detection rate %", data: data.series.map((r) => percent(r.live.detection_rate)), borderColor: "#0d6efd" },
        { label: "shadow detection rate %", data: data.series.map((r) => percent(r.shadow.detection_rate)), borderColor: "#fd7e14" },
      ],
    },
    options: { animation: false, scales: { y: { min: 0, max: 100 } }, plugins: { legend: { position: "bottom" } } },
  });
})();
