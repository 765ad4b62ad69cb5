// New-run form: the version and base lists follow the chosen dataset (its frozen versions; its production model
// among the bases), also when the form was opened without ?dataset=.
(function () {
  const dataset = document.getElementById("id_dataset");
  const version = document.getElementById("id_version");
  const base = document.getElementById("id_base");
  const fill = (select, first, options, keep) => {
    select.replaceChildren(new Option(first.label, first.value));
    for (const o of options) select.add(new Option(o.label, o.value, false, o.value === keep));
  };
  async function follow() {
    const slug = dataset.value;
    if (!slug) { fill(version, { value: "", label: version.options[0].text }, []); return; }
    const [versions, bases] = await Promise.all([
      VectorApi.request("GET", `/api/v1/datasets/${encodeURIComponent(slug)}/versions`),
      VectorApi.request("GET", `/api/v1/training/bases?dataset=${encodeURIComponent(slug)}`),
    ]);
    if (versions.ok) {
      fill(version, { value: "", label: version.options[0].text },
        versions.body.map((v) => ({ value: String(v.id), label: `v${v.number} (${v.image_count} images)` })), version.value);
    }
    if (bases.ok) fill(base, { value: "", label: "Automatic" }, bases.body, base.value);
    document.getElementById("run-form").dataset.followed = slug; // for tests
  }
  dataset.addEventListener("change", follow);
  if (dataset.value && version.options.length <= 1) follow();
})();
