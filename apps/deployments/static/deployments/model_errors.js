// Error viewer: every test image with ground truth (green), the candidate's (blue) and production's (orange, dashed)
// predictions drawn over it, each layer toggled; filters by kind of error, model, class and slice; sorted by how much
// the two models disagree (the server's order).
(function () {
  const source = document.getElementById("error-images");
  if (!source) return;
  const images = JSON.parse(source.textContent);
  const classes = JSON.parse(document.getElementById("error-classes").textContent);
  const form = document.getElementById("error-filters");
  const grid = document.getElementById("error-grid");
  const slices = new Set(images.flatMap((r) => Object.entries(r.slices).map(([k, v]) => `${k}:${v}`)));
  for (const s of [...slices].sort()) form.slice.add(new Option(s.replace(":", ": "), s));
  const STYLE = { truth: 'stroke="#198754"', candidate: 'stroke="#0d6efd"', production: 'stroke="#fd7e14" stroke-dasharray="6 4"' };
  const rect = (b, layer) => `<rect class="layer-${layer}" x="${b.box[0]}" y="${b.box[1]}" width="${b.box[2]}" height="${b.box[3]}" fill="none" ${STYLE[layer]} stroke-width="2" vector-effect="non-scaling-stroke"><title>${classes[b.class_id] ?? b.class_id}${b.confidence !== undefined ? " " + b.confidence : ""}${b.tp === false ? " (false positive)" : ""}</title></rect>`;
  const counts = (m) => (m ? `TP ${m.tp} · FP ${m.fp} · missed ${m.missed}` : "–");

  function matches(row, f) {
    if (f.slice) { const [k, v] = f.slice.split(":"); if (row.slices[k] !== v) return false; }
    const models = f.model === "either" ? ["candidate", "production"] : [f.model];
    const cls = f.class === "" ? null : Number(f.class);
    if (cls !== null && !row.truth.some((b) => b.class_id === cls)
        && !models.some((m) => row[m] && row[m].boxes.some((b) => b.class_id === cls))) return false;
    if (!f.kind) return true;
    return models.some((m) => {
      const r = row[m];
      if (!r) return false;
      const boxes = cls === null ? r.boxes : r.boxes.filter((b) => b.class_id === cls);
      if (f.kind === "tp") return boxes.some((b) => b.tp);
      if (f.kind === "fp") return boxes.some((b) => !b.tp);
      return r.missed > 0;
    });
  }

  function render() {
    const f = Object.fromEntries(["kind", "model", "class", "slice"].map((n) => [n, form[n].value]));
    const layers = new Set([...form.querySelectorAll("input[name=layer]:checked")].map((i) => i.value));
    const shown = images.filter((row) => matches(row, f));
    grid.innerHTML = shown.map((row) => {
      const svg = ["truth", "candidate", "production"].filter((l) => layers.has(l))
        .flatMap((l) => (l === "truth" ? row.truth : (row[l] ? row[l].boxes : [])).map((b) => rect(b, l))).join("");
      return `<a class="card text-decoration-none small" data-image-id="${row.image_id}" href="${grid.dataset.imagePage}?image=${row.image_id}">
        <div class="position-relative"><img src="/datasets/images/${row.image_id}/file" alt="image ${row.image_id}" style="width:100%;display:block">
        <svg viewBox="0 0 ${row.width} ${row.height}" preserveAspectRatio="none" style="position:absolute;inset:0;width:100%;height:100%">${svg}</svg></div>
        <div class="card-body p-1"><div class="text-primary">candidate: ${counts(row.candidate)}</div>
        <div style="color:#fd7e14">production: ${counts(row.production)}</div>
        <div class="text-muted">disagreement ${row.disagreement} · ${Object.values(row.slices).join(" · ")}</div></div></a>`;
    }).join("");
    document.getElementById("error-count").textContent = `${shown.length} of ${images.length} images`;
    window.errorViewerShown = shown.map((row) => row.image_id); // for tests
  }
  form.addEventListener("change", render);
  render();
})();
