// Review page: draws the submitted boxes over the image and sends approve / reject with a comment.
(() => {
  const cfg = JSON.parse(document.getElementById("review-config").textContent);
  const PALETTE = ["#ff3b30", "#34c759", "#0a84ff", "#ff9f0a", "#bf5af2", "#64d2ff", "#ffd60a", "#ff375f", "#30d158"];
  const svgNS = "http://www.w3.org/2000/svg";
  const group = document.getElementById("review-boxes");
  const stroke = Math.max(1, Math.round(Math.max(cfg.width, cfg.height) / 320));
  for (const b of cfg.boxes) {
    const colour = PALETTE[Math.max(0, cfg.classes.indexOf(b.label)) % PALETTE.length];
    const rect = document.createElementNS(svgNS, "rect");
    const [x, y, w, h] = b.box;
    Object.entries({ x, y, width: w, height: h, fill: "none", stroke: colour, "stroke-width": stroke }).forEach(
      ([k, v]) => rect.setAttribute(k, v));
    const text = document.createElementNS(svgNS, "text");
    Object.entries({ x, y: Math.max(stroke * 6, y - stroke), fill: colour, "font-size": stroke * 6 }).forEach(
      ([k, v]) => text.setAttribute(k, v));
    text.textContent = b.label;
    group.append(rect, text);
  }
  const errorBox = document.getElementById("review-error");
  const comment = document.getElementById("review-comment");
  async function decide(decision) {
    errorBox.textContent = "";
    const result = await VectorApi.request("POST", cfg.review_url, {
      body: { decision, comment: comment ? comment.value : "" },
    });
    if (result.ok) { location.href = cfg.next_url; return; }
    errorBox.textContent = VectorApi.errorText(result, (status) => `Error ${status}`);
    if (decision === "reject" && comment) comment.focus();
  }
  const approve = document.getElementById("approve-btn");
  const reject = document.getElementById("reject-btn");
  if (approve) approve.addEventListener("click", () => decide("approve"));
  if (reject) reject.addEventListener("click", () => decide("reject"));
  document.addEventListener("keydown", (e) => {
    const typing = e.target === comment;
    if (typing) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); decide("reject"); }
      if (e.key === "Escape") comment.blur();
      return;
    }
    if (!approve) return;
    if (e.key === "a" || e.key === "A") { e.preventDefault(); decide("approve"); }
    if (e.key === "r" || e.key === "R") { e.preventDefault(); comment.focus(); }
  });
})();
