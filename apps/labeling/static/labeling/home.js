// Labeling home: queue counts per dataset follow the "queue" events of each dataset's topic; after a reconnect the
// counts are fetched again (events missed while disconnected are in them).
document.querySelectorAll("tr[data-slug]").forEach((row) => {
  const show = (counts) => {
    const values = { ...counts, approved: counts.statuses.approved };
    row.querySelectorAll("[data-count]").forEach((cell) => { cell.textContent = values[cell.dataset.count]; });
  };
  const resync = () => VectorApi.request("GET", `/api/v1/labeling/datasets/${encodeURIComponent(row.dataset.slug)}/queue`)
    .then((result) => { if (result.ok) show(result.body.counts); });
  VectorEvents.follow(`dataset.${row.dataset.slug}`, (event, data) => {
    if (event === "queue") show(data);
  }, { resync });
});
