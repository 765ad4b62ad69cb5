// Image page: the image on a canvas with each layer of boxes (labels, predictions ...) drawn over it; a checkbox per
// layer shows or hides it.
(function () {
  const canvas = document.getElementById("image-canvas");
  const layers = JSON.parse(document.getElementById("image-layers").textContent);
  const classes = JSON.parse(document.getElementById("image-classes").textContent);
  const shown = layers.map(() => true);
  const picture = new window.Image();
  const draw = () => {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (picture.complete && picture.naturalWidth) ctx.drawImage(picture, 0, 0, canvas.width, canvas.height);
    const line = Math.max(1, Math.round(canvas.width / 320));
    ctx.font = `${10 * line}px sans-serif`;
    layers.forEach((layer, k) => {
      if (!shown[k]) return;
      ctx.strokeStyle = ctx.fillStyle = layer.color;
      ctx.lineWidth = 2 * line;
      if (k > 0) ctx.setLineDash([6 * line, 4 * line]); else ctx.setLineDash([]);
      for (const b of layer.boxes) {
        const [x, y, w, h] = b.box;
        ctx.strokeRect(x, y, w, h);
        const name = classes[b.class_id] ?? `class ${b.class_id}`;
        const text = b.confidence !== undefined ? `${name} ${Number(b.confidence).toFixed(2)}` : name;
        ctx.fillText(text, x + 2 * line, Math.max(10 * line, y - 2 * line));
      }
    });
    window.imageDrawn = shown.map((on, k) => (on ? layers[k].boxes.length : 0)); // for tests: boxes drawn per layer
  };
  document.querySelectorAll("#layer-toggles input[data-layer]").forEach((box) =>
    box.addEventListener("change", () => { shown[Number(box.dataset.layer)] = box.checked; draw(); }));
  picture.onload = draw;
  picture.onerror = draw;
  picture.src = canvas.dataset.src;
})();
