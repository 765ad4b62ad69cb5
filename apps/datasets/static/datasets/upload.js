// Drag-and-drop upload for the dataset page: one file at a time to POST /api/v1/images, with per-file progress
// and the server's error message per file (the API's error envelope).
(function () {
  "use strict";
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  const list = document.getElementById("upload-list");
  const slugNode = document.getElementById("dataset-slug");
  if (!zone || !list || !slugNode) return;
  const slug = JSON.parse(slugNode.textContent);
  const queue = [];
  let busy = false;

  function row(file) {
    const li = document.createElement("li");
    li.className = "mb-1 upload-item";
    const name = document.createElement("div");
    name.className = "text-truncate";
    name.textContent = file.name;
    const bar = document.createElement("div");
    bar.className = "progress";
    bar.style.height = "6px";
    const fill = document.createElement("div");
    fill.className = "progress-bar";
    fill.style.width = "0%";
    bar.appendChild(fill);
    const note = document.createElement("div");
    note.className = "upload-note text-muted";
    li.append(name, bar, note);
    list.prepend(li);
    return { li, fill, note };
  }

  function finish(view, ok, text) {
    view.fill.style.width = "100%";
    view.fill.classList.add(ok ? "bg-success" : "bg-danger");
    view.note.className = "upload-note " + (ok ? "text-success" : "text-danger");
    view.note.textContent = text;
    view.li.dataset.result = ok ? "ok" : "error";
  }

  function send(item) {
    return new Promise((resolve) => {
      const form = new FormData();
      form.append("file", item.file);
      form.append("dataset", slug);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/v1/images");
      xhr.setRequestHeader("X-CSRFToken", VectorApi.csrfToken());
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) item.view.fill.style.width = Math.round((100 * e.loaded) / e.total) + "%";
      };
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        if (xhr.status === 201) finish(item.view, true, "stored (" + body.split + ")");
        else if (xhr.status === 200 && body && body.duplicate) finish(item.view, true, "already here (duplicate)");
        else if (body && body.error) finish(item.view, false, body.error.code + ": " + body.error.message);
        else finish(item.view, false, "HTTP " + xhr.status);
        resolve();
      };
      xhr.onerror = () => { finish(item.view, false, "network error"); resolve(); };
      xhr.send(form);
    });
  }

  async function drain() {
    if (busy) return;
    busy = true;
    while (queue.length) await send(queue.shift());
    busy = false;
  }

  function add(files) {
    for (const file of files) queue.push({ file, view: row(file) });
    drain();
  }

  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (e) => {
    e.preventDefault();
    zone.classList.add("bg-body-secondary");
  }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, (e) => {
    e.preventDefault();
    zone.classList.remove("bg-body-secondary");
  }));
  zone.addEventListener("drop", (e) => add(e.dataTransfer.files));

  // Live: count images that arrive (robots, other people, imports) while this page is open. After a reconnect the
  // newest images are fetched, so arrivals while disconnected count too (ids above those there at the first connect).
  const notice = document.getElementById("new-images");
  if (notice && window.VectorEvents) {
    const arrived = new Set();
    let baseline = null;
    const show = () => {
      if (!arrived.size) return;
      document.getElementById("new-count").textContent = String(arrived.size);
      notice.classList.remove("d-none");
    };
    const resync = () => VectorApi.request("GET", `/api/v1/images?dataset=${encodeURIComponent(slug)}`).then((result) => {
      if (!result.ok) return;
      const ids = result.body.results.map((image) => image.id);
      if (baseline === null) baseline = Math.max(0, ...ids);
      else ids.filter((id) => id > baseline).forEach((id) => arrived.add(id));
      show();
    });
    window.VectorEvents.follow("dataset." + slug, (event, data) => {
      if (event !== "image_ingested") return;
      arrived.add(data.id);
      show();
    }, { resync });
  }
  input.addEventListener("change", () => { add(input.files); input.value = ""; });
})();
