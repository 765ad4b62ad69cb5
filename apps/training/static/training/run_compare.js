// Comparison page: the picked runs' curves overlaid, one chart per metric, one line per run.
window.overlayCharts = VectorCurves.overlay(
  document.getElementById("overlay-charts"), JSON.parse(document.getElementById("run-curves").textContent));
