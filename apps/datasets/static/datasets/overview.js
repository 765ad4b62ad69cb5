// Dataset overview: bar charts of what the dataset holds, from the statistics the page was rendered with.
(function () {
  const o = JSON.parse(document.getElementById("dataset-overview").textContent);
  const bar = (id, labels, datasets, stacked) => new Chart(document.getElementById(id), {
    type: "bar",
    data: { labels, datasets },
    options: { animation: false, plugins: { legend: { display: datasets.length > 1 } },
      scales: { x: { stacked: !!stacked }, y: { beginAtZero: true, stacked: !!stacked } } },
  });
  const bins = (n, lo, hi, digits) => Array.from({ length: n }, (_, i) => (lo + (i * (hi - lo)) / n).toFixed(digits));
  const colors = { train: "#0d6efd", val: "#fd7e14", test: "#198754" };
  window.overviewCharts = {
    classes: bar("chart-classes", o.classes, [{ label: "boxes", data: o.boxes_per_class, backgroundColor: "#0d6efd" }]),
    perImage: bar("chart-per-image", o.boxes_per_image.map((_, i) => (i === o.boxes_per_image.length - 1 ? `${i}+` : `${i}`)),
      [{ label: "images", data: o.boxes_per_image, backgroundColor: "#6f42c1" }]),
    brightness: bar("chart-brightness", bins(20, 0, 1, 2),
      Object.entries(o.brightness).map(([split, data]) => ({ label: split, data, backgroundColor: colors[split] })), true),
    sizes: bar("chart-sizes", bins(o.box_sizes.length, 0, 1, 2), [{ label: "boxes", data: o.box_sizes, backgroundColor: "#20c997" }]),
    aspects: bar("chart-aspects", o.aspect_edges.slice(0, -1).map((e, i) => {
      const next = o.aspect_edges[i + 1];
      return next === null ? `≥${e}` : `${e}–${next}`;
    }), [{ label: "boxes", data: o.box_aspects, backgroundColor: "#dc3545" }]),
  };
})();
