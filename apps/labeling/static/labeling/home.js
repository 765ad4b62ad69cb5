// Labeling home: queue counts per dataset follow the "queue" events of each dataset's topic.
document.querySelectorAll("tr[data-slug]").forEach((row) => {
  VectorEvents.follow(`dataset.${row.dataset.slug}`, (event, data) => {
    if (event !== "queue") return;
    const values = { ...data, approved: data.statuses.approved };
    row.querySelectorAll("[data-count]").forEach((cell) => { cell.textContent = values[cell.dataset.count]; });
  });
});
