// The labeling tool, and the review page (the same canvas, cfg.mode === "review"): one image, its boxes (Konva +
// Konva.Transformer for select / move / resize handles), a class menu per box, a crosshair, keyboard-first.
// Labeling: claims with a heartbeat, a prefetched next image, autosaved drafts, versioned saves with a conflict
// dialog, model suggestions (click one to take it), the previous image, live updates. Review: edit the boxes,
// approve / reject and move on, go back, approve a filtered set, the model's doubts about suspect labels.
// Box coordinates are always original-image pixels.
(() => {
  "use strict";
  const cfg = JSON.parse(document.getElementById("label-config").textContent);
  const REVIEW = cfg.mode === "review";
  const STICKY_KEY = "vectormlops.label.stickyClass";
  const REVIEW_TRAIL_KEY = `vectormlops.review.trail.${cfg.dataset}`;
  const PALETTE = ["#ff3b30", "#34c759", "#0a84ff", "#ff9f0a", "#bf5af2", "#64d2ff", "#ffd60a", "#ff375f", "#30d158"];
  const HEARTBEAT_MS = 60 * 1000;
  const DRAFT_DEBOUNCE_MS = 700;
  const MIN_BOX_SCREEN_PX = 4;

  const $ = (id) => document.getElementById(id);
  const colourOf = (label) => PALETTE[Math.max(0, cfg.classes.indexOf(label)) % PALETTE.length];
  const round2 = (v) => Math.round(v * 100) / 100;
  const urlFor = (name, id) => cfg.urls[name].replace(/\/0(?=\/|$)/, `/${id}`);
  let uidSeq = 1;
  const withUid = (b) => ({ uid: uidSeq++, label: b.label, box: b.box.map(Number) });

  const state = {
    current: null, // the image bundle on screen
    imageEl: null,
    version: 0,
    boxes: [], // [{uid, label, box: [x, y, w, h]}]
    suggestions: [],
    selected: null, // uid
    activeClass: 0,
    undo: [],
    redo: [],
    prefetched: null, // {bundle, img}
    prefetchAsked: 0, // which prefetch may still store its answer: moving on makes earlier ones stale
    busy: false,
    done: 0,
    draftTimer: null,
    draftInFlight: null,
    dirty: false,
    claims: new Map(), // image_id -> user
    readOnly: null, // why the boxes cannot be changed (approved for an annotator, someone else's image), or null
    broken: false, // the image on screen could not be loaded: nothing to label, only moving on or reloading
    trail: [], // image ids shown before this one (B goes back)
    stickyClass: localStorage.getItem(STICKY_KEY) !== "0", // a new box takes the last used class
  };

  // --- HTTP ----------------------------------------------------------------------------------------------------
  const api = (method, url, body, { keepalive = false } = {}) => VectorApi.request(method, url, { body, keepalive });
  const errorText = (r) => VectorApi.errorText(r);

  // --- notices -------------------------------------------------------------------------------------------------
  function notice(kind, html, { key = null, timeout = 0 } = {}) {
    const box = $("notices");
    if (key) box.querySelectorAll(`[data-key="${key}"]`).forEach((n) => n.remove());
    const div = document.createElement("div");
    div.className = `alert alert-${kind} alert-dismissible d-flex align-items-center gap-2`;
    if (key) div.dataset.key = key;
    div.innerHTML = `<div class="me-auto">${html}</div><button type="button" class="btn-close" aria-label="Close"></button>`;
    div.querySelector(".btn-close").addEventListener("click", () => div.remove());
    box.append(div);
    if (timeout) setTimeout(() => div.remove(), timeout);
    return div;
  }
  const clearNotices = () => { $("notices").innerHTML = ""; };
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  // --- Konva scene ---------------------------------------------------------------------------------------------
  const wrap = $("canvas-wrap");
  const stage = new Konva.Stage({ container: "canvas-wrap", width: wrap.clientWidth, height: wrap.clientHeight });
  const layer = new Konva.Layer();
  stage.add(layer);
  const world = new Konva.Group(); // image pixels; scaled and moved for zoom / pan
  layer.add(world);
  const imageNode = new Konva.Image({ x: 0, y: 0, name: "image" });
  world.add(imageNode);
  const suggestionGroup = new Konva.Group();
  const boxGroup = new Konva.Group();
  world.add(suggestionGroup, boxGroup);
  const drawRect = new Konva.Rect({ visible: false, listening: false, strokeWidth: 2, strokeScaleEnabled: false, dash: [4, 3] });
  world.add(drawRect);
  const transformer = new Konva.Transformer({
    rotateEnabled: false,
    flipEnabled: false,
    keepRatio: false,
    ignoreStroke: true,
    anchorSize: 9,
    borderStroke: "#ffffff",
    anchorStroke: "#0a84ff",
    boundBoxFunc: (oldBox, newBox) => (newBox.width < MIN_BOX_SCREEN_PX || newBox.height < MIN_BOX_SCREEN_PX ? oldBox : newBox),
  });
  layer.add(transformer);
  // The crosshair: two lines through the pointer across the image (screen space, above everything, not clickable).
  const overlay = new Konva.Layer({ listening: false });
  stage.add(overlay);
  const crossH = new Konva.Line({ points: [0, 0, 0, 0], stroke: "rgba(255,255,255,0.55)", strokeWidth: 1, dash: [4, 4], visible: false, name: "crosshair" });
  const crossV = crossH.clone();
  overlay.add(crossH, crossV);

  const scale = () => world.scaleX();
  const imgW = () => (state.current ? state.current.width : 1);
  const imgH = () => (state.current ? state.current.height : 1);
  function toImage(pos) {
    return world.getAbsoluteTransform().copy().invert().point(pos);
  }
  function clampBox([x, y, w, h]) {
    const x0 = Math.max(0, Math.min(x, x + w)), y0 = Math.max(0, Math.min(y, y + h));
    const x1 = Math.min(imgW(), Math.max(x, x + w)), y1 = Math.min(imgH(), Math.max(y, y + h));
    return [x0, y0, Math.max(0, x1 - x0), Math.max(0, y1 - y0)];
  }

  function fit() {
    stage.width(wrap.clientWidth);
    stage.height(wrap.clientHeight);
    const s = Math.min(stage.width() / imgW(), stage.height() / imgH()) * 0.96;
    world.scale({ x: s, y: s });
    world.position({ x: (stage.width() - imgW() * s) / 2, y: (stage.height() - imgH() * s) / 2 });
    state.fitScale = s;
    render();
  }
  function zoomAt(point, factor) {
    const old = scale();
    const next = Math.max((state.fitScale || old) * 0.5, Math.min(old * factor, 40));
    const anchor = { x: (point.x - world.x()) / old, y: (point.y - world.y()) / old };
    world.scale({ x: next, y: next });
    world.position({ x: point.x - anchor.x * next, y: point.y - anchor.y * next });
    render();
  }

  function render() {
    boxGroup.destroyChildren();
    suggestionGroup.destroyChildren();
    const s = scale();
    const font = 12 / s;
    for (const sug of state.suggestions) {
      const [x, y, w, h] = sug.box;
      const colour = colourOf(sug.label);
      const rect = new Konva.Rect({ x, y, width: w, height: h, stroke: colour, strokeWidth: 2, strokeScaleEnabled: false, dash: [6, 4], opacity: 0.85, name: "suggestion", fill: "rgba(0,0,0,0.01)" });
      rect.on("mouseenter", () => { rect.strokeWidth(4); wrap.style.cursor = "copy"; layer.batchDraw(); });
      rect.on("mouseleave", () => { rect.strokeWidth(2); wrap.style.cursor = ""; layer.batchDraw(); });
      rect.on("click tap", (e) => { if (!e.evt.button) acceptSuggestion(sug); });
      suggestionGroup.add(rect);
      const tag = new Konva.Label({ x, y: y + h + 1 / s, opacity: 0.9, listening: false });
      tag.add(new Konva.Tag({ fill: "rgba(255,255,255,0.8)", stroke: colour, strokeWidth: 1, strokeScaleEnabled: false, dash: [3, 2] }));
      tag.add(new Konva.Text({ text: `${sug.label} ${Math.round(sug.confidence * 100)} %`, fontSize: font, padding: 2 / s, fill: "#212529" }));
      suggestionGroup.add(tag);
    }
    let selectedNode = null;
    for (const b of state.boxes) {
      const [x, y, w, h] = b.box;
      const colour = colourOf(b.label);
      const selected = b.uid === state.selected;
      const rect = new Konva.Rect({
        x, y, width: w, height: h, id: `box-${b.uid}`, name: "box",
        stroke: colour, strokeWidth: selected ? 3 : 2, strokeScaleEnabled: false,
        fill: selected ? "rgba(255,255,255,0.12)" : "rgba(0,0,0,0.01)", draggable: !state.readOnly,
      });
      // Space+drag or the middle button pans the image; the box under the pointer stays where it is.
      rect.on("dragstart", () => { if (state.panning || state.spaceHeld) rect.stopDrag(); });
      rect.setAttr("uid", b.uid);
      rect.on("mousedown touchstart", (e) => {
        if (e.evt.button === 0 || e.evt.touches) selectInPlace(b.uid, rect);
      });
      rect.on("dragend", () => {
        const nx = Math.min(Math.max(0, rect.x()), imgW() - b.box[2]);
        const ny = Math.min(Math.max(0, rect.y()), imgH() - b.box[3]);
        commit(() => { b.box = [nx, ny, b.box[2], b.box[3]]; });
      });
      rect.on("mouseenter", () => { if (!state.panning && !state.drawing) wrap.style.cursor = "move"; });
      rect.on("mouseleave", () => { wrap.style.cursor = ""; });
      boxGroup.add(rect);
      // The label tag opens the box's class menu.
      const tag = new Konva.Label({ x, y: y - font * 1.4, name: "box-tag", id: `tag-${b.uid}` });
      tag.add(new Konva.Tag({ fill: colour, opacity: 0.85 }));
      tag.add(new Konva.Text({ text: `${doubted(b) ? "⚠ " : ""}${b.label} ▾`, fontSize: font, padding: 2 / s, fill: "#fff" }));
      tag.on("mousedown touchstart", (e) => { e.cancelBubble = true; });
      tag.on("click tap", (e) => {
        if (e.evt.button) return;
        select(b.uid);
        openClassMenu(b.uid);
      });
      tag.on("mouseenter", () => { wrap.style.cursor = "pointer"; });
      tag.on("mouseleave", () => { wrap.style.cursor = ""; });
      boxGroup.add(tag);
      if (selected) selectedNode = rect;
    }
    transformer.nodes(selectedNode && !state.readOnly ? [selectedNode] : []); // no resize handles when read-only
    if (selectedNode) transformer.moveToTop();
    // Draw now, not on the next animation frame: the hit canvas must know the new nodes before the next click.
    layer.draw();
    $("zoom-level").textContent = `${Math.round(s * 100)} %`;
    renderSide();
  }

  function renderSide() {
    const list = $("box-list");
    list.innerHTML = "";
    state.boxes.forEach((b, i) => {
      const li = document.createElement("li");
      li.className = `list-group-item d-flex gap-2${b.uid === state.selected ? " active" : ""}`;
      li.innerHTML = `<span class="class-swatch" style="background:${colourOf(b.label)}"></span><span>${i + 1}. ${esc(b.label)}</span>` +
        `<span class="ms-auto text-muted">${b.box.map((v) => Math.round(v)).join(", ")}</span>`;
      li.addEventListener("click", () => select(b.uid));
      list.append(li);
    });
    $("box-count").textContent = state.boxes.length;
    document.querySelectorAll("#class-list .list-group-item").forEach((li, i) => li.classList.toggle("active", i === state.activeClass));
    const locked = Boolean(state.readOnly) || state.broken || !state.current;
    $("undo-btn").disabled = locked || !state.undo.length;
    $("redo-btn").disabled = locked || !state.redo.length;
    $("delete-btn").disabled = locked || state.selected === null;
    $("accept-btn").hidden = locked || !state.suggestions.length;
    $("back-btn").disabled = !state.trail.length;
    for (const id of ["submit-btn", "skip-btn", "approve-btn", "reject-btn"]) {
      const btn = $(id);
      if (btn) btn.disabled = !state.current || (id !== "skip-btn" && (Boolean(state.readOnly) || state.broken));
    }
    if (!REVIEW) $("sticky-class").checked = state.stickyClass;
  }

  // --- the class menu of one box (click its tag, or M with the box selected) -------------------------------------
  const menu = $("class-menu");
  function openClassMenu(uid) {
    const box = state.boxes.find((b) => b.uid === uid);
    if (!box || state.readOnly) return;
    menu.innerHTML = "";
    cfg.classes.forEach((name, i) => {
      const item = document.createElement("button");
      item.type = "button";
      item.className = `list-group-item list-group-item-action py-1 px-2 small${name === box.label ? " active" : ""}`;
      item.setAttribute("role", "menuitem");
      item.dataset.classIndex = i;
      item.innerHTML = `<span class="class-swatch" style="background:${colourOf(name)}"></span>${esc(name)}${i < 9 ? ` <kbd class="float-end ms-2">${i + 1}</kbd>` : ""}`;
      item.addEventListener("click", () => { closeClassMenu(); relabel(box, i); });
      menu.append(item);
    });
    const t = world.getAbsoluteTransform().point({ x: box.box[0], y: box.box[1] });
    menu.style.left = `${Math.max(0, Math.min(t.x, stage.width() - 160))}px`;
    menu.style.top = `${Math.max(0, t.y)}px`;
    menu.hidden = false;
    menu.dataset.uid = uid;
    (menu.querySelector(".active") || menu.firstElementChild)?.focus({ preventScroll: true });
  }
  function closeClassMenu() {
    if (menu.hidden) return;
    menu.hidden = true;
    wrap.focus({ preventScroll: true });
  }
  menu.addEventListener("keydown", (e) => {
    const items = [...menu.querySelectorAll("button")];
    const at = items.indexOf(document.activeElement);
    if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); closeClassMenu(); }
    else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      e.stopPropagation();
      items[(at + (e.key === "ArrowDown" ? 1 : -1) + items.length) % items.length].focus();
    } else if (/^[1-9]$/.test(e.key)) {
      e.preventDefault();
      e.stopPropagation();
      const box = state.boxes.find((b) => b.uid === Number(menu.dataset.uid));
      closeClassMenu();
      if (box) relabel(box, Number(e.key) - 1);
    }
  });
  document.addEventListener("mousedown", (e) => { if (!menu.hidden && !menu.contains(e.target)) closeClassMenu(); });

  // --- what the model doubts (review of suspect labels) ----------------------------------------------------------
  const sameBox = (a, b) => a.every((v, i) => Math.abs(v - b[i]) < 0.6);
  function doubted(b) {
    const suspect = state.current && state.current.suspect;
    return Boolean(suspect && suspect.reasons.some((r) => r.label === b.label && r.box && sameBox(r.box, b.box)));
  }

  function buildClassList() {
    const list = $("class-list");
    cfg.classes.forEach((name, i) => {
      const li = document.createElement("li");
      li.className = "list-group-item list-group-item-action";
      li.innerHTML = `<span class="class-swatch" style="background:${colourOf(name)}"></span>${esc(name)}${i < 9 ? ` <kbd class="float-end">${i + 1}</kbd>` : ""}`;
      li.addEventListener("click", () => pickClass(i));
      list.append(li);
    });
  }

  // --- editing with undo / redo ---------------------------------------------------------------------------------
  function commit(mutate) {
    if (state.readOnly) {
      notice("secondary", esc(state.readOnly), { key: "read-only" });
      render(); // puts a dragged box back
      return;
    }
    state.undo.push(JSON.stringify(state.boxes));
    if (state.undo.length > 200) state.undo.shift();
    state.redo = [];
    mutate();
    changed();
  }
  function changed() {
    state.dirty = true;
    render();
    scheduleDraft();
  }
  function undo() {
    if (!state.undo.length) return;
    state.redo.push(JSON.stringify(state.boxes));
    state.boxes = JSON.parse(state.undo.pop());
    if (!state.boxes.some((b) => b.uid === state.selected)) state.selected = null;
    changed();
  }
  function redo() {
    if (!state.redo.length) return;
    state.undo.push(JSON.stringify(state.boxes));
    state.boxes = JSON.parse(state.redo.pop());
    if (!state.boxes.some((b) => b.uid === state.selected)) state.selected = null;
    changed();
  }
  function select(uid) {
    state.selected = uid;
    render();
  }
  // Selecting on mousedown must not rebuild the nodes: the drag that may follow holds this very node.
  function selectInPlace(uid, rect) {
    if (state.selected === uid) return;
    state.selected = uid;
    boxGroup.find(".box").forEach((node) => {
      const on = node.getAttr("uid") === uid;
      node.strokeWidth(on ? 3 : 2);
      node.fill(on ? "rgba(255,255,255,0.12)" : "rgba(0,0,0,0.01)");
    });
    transformer.nodes(state.readOnly ? [] : [rect]);
    transformer.moveToTop();
    layer.batchDraw();
    renderSide();
  }
  function selectedBox() { return state.boxes.find((b) => b.uid === state.selected) || null; }
  function relabel(box, i) {
    if (i < 0 || i >= cfg.classes.length) return;
    if (state.stickyClass) state.activeClass = i; // "new box takes the last used class"
    if (box.label !== cfg.classes[i]) commit(() => { box.label = cfg.classes[i]; });
    else render();
  }
  // A class key acts on the selected box only; with nothing selected it picks the class of new boxes.
  function pickClass(i) {
    if (i < 0 || i >= cfg.classes.length) return;
    const box = selectedBox();
    if (box) { relabel(box, i); return; }
    state.activeClass = i;
    render();
  }
  function deleteSelected() {
    const box = selectedBox();
    if (!box) return;
    commit(() => { state.boxes = state.boxes.filter((b) => b !== box); });
    state.selected = null;
    render();
  }
  function nudge(dx, dy) {
    const box = selectedBox();
    if (!box) return;
    const [x, y, w, h] = box.box;
    commit(() => { box.box = [Math.min(Math.max(0, x + dx), imgW() - w), Math.min(Math.max(0, y + dy), imgH() - h), w, h]; });
  }
  function acceptSuggestions() {
    if (!state.suggestions.length) return;
    commit(() => {
      for (const s of state.suggestions) state.boxes.push(withUid({ label: s.label, box: clampBox(s.box) }));
      state.suggestions = [];
    });
  }
  function acceptSuggestion(sug) {
    commit(() => {
      state.boxes.push(withUid({ label: sug.label, box: clampBox(sug.box) }));
      state.suggestions = state.suggestions.filter((s) => s !== sug);
    });
  }
  function selectNext(step) {
    if (!state.boxes.length) return;
    const i = state.boxes.findIndex((b) => b.uid === state.selected);
    const n = state.boxes.length;
    select(state.boxes[(i + step + n) % n].uid);
  }

  transformer.on("transformend", () => {
    const node = transformer.nodes()[0];
    if (!node) return;
    const box = state.boxes.find((b) => b.uid === node.getAttr("uid"));
    if (!box) return;
    const next = clampBox([node.x(), node.y(), node.width() * node.scaleX(), node.height() * node.scaleY()]);
    node.scale({ x: 1, y: 1 });
    if (next[2] <= 0 || next[3] <= 0) { render(); return; }
    commit(() => { box.box = next; });
  });

  // --- mouse: draw, pan, zoom ------------------------------------------------------------------------------------
  stage.on("mousedown touchstart", (e) => {
    if (!state.current || state.broken) return;
    const evt = e.evt;
    const pointer = stage.getPointerPosition();
    if (evt.button === 1 || state.spaceHeld) {
      evt.preventDefault();
      state.panning = { x: pointer.x, y: pointer.y, wx: world.x(), wy: world.y() };
      wrap.classList.add("panning");
      return;
    }
    if (evt.button !== undefined && evt.button !== 0) return;
    const target = e.target;
    if (target.hasName("box") || target.hasName("suggestion") || target.findAncestor(".box-tag") || target.getParent() === transformer || target.getParent()?.className === "Transformer") return;
    if (state.readOnly) return;
    const p = toImage(pointer);
    if (p.x < 0 || p.y < 0 || p.x > imgW() || p.y > imgH()) { state.selected = null; render(); return; }
    if (!cfg.classes.length) { notice("warning", "This dataset has no classes yet; an ML engineer adds them on the dataset page.", { key: "classes" }); return; }
    state.drawing = { x: p.x, y: p.y };
    wrap.classList.add("drawing");
    drawRect.setAttrs({ x: p.x, y: p.y, width: 0, height: 0, visible: true, stroke: colourOf(cfg.classes[state.activeClass]) });
    layer.batchDraw();
  });
  stage.on("mousemove touchmove", () => {
    const pointer = stage.getPointerPosition();
    if (!pointer || !state.current) return;
    const p = toImage(pointer);
    const inside = p.x >= 0 && p.y >= 0 && p.x <= imgW() && p.y <= imgH();
    $("cursor-pos").textContent = inside ? `x ${Math.round(p.x)}, y ${Math.round(p.y)}` : "";
    moveCrosshair(inside && !state.panning && !state.readOnly ? pointer : null);
    if (state.panning) {
      world.position({ x: state.panning.wx + pointer.x - state.panning.x, y: state.panning.wy + pointer.y - state.panning.y });
      layer.batchDraw();
    } else if (state.drawing) {
      const [x, y, w, h] = clampBox([state.drawing.x, state.drawing.y, p.x - state.drawing.x, p.y - state.drawing.y]);
      drawRect.setAttrs({ x, y, width: w, height: h });
      layer.batchDraw();
    }
  });
  function finishPointer() {
    if (state.panning) {
      state.panning = null;
      wrap.classList.remove("panning");
    }
    if (state.drawing) {
      const box = [drawRect.x(), drawRect.y(), drawRect.width(), drawRect.height()];
      state.drawing = null;
      wrap.classList.remove("drawing");
      drawRect.visible(false);
      if (box[2] * scale() >= MIN_BOX_SCREEN_PX && box[3] * scale() >= MIN_BOX_SCREEN_PX) {
        // Not selected: a class key right after drawing picks the next box's class, it does not relabel this one.
        const created = withUid({ label: cfg.classes[state.activeClass], box });
        state.selected = null;
        commit(() => { state.boxes.push(created); });
      } else {
        state.selected = null; // a click on empty space deselects
        render();
      }
    }
  }
  function moveCrosshair(pointer) {
    crossH.visible(Boolean(pointer));
    crossV.visible(Boolean(pointer));
    if (pointer) {
      const a = world.getAbsoluteTransform().point({ x: 0, y: 0 });
      const b = world.getAbsoluteTransform().point({ x: imgW(), y: imgH() });
      crossH.points([a.x, pointer.y, b.x, pointer.y]);
      crossV.points([pointer.x, a.y, pointer.x, b.y]);
    }
    overlay.batchDraw();
  }
  stage.on("mouseleave", () => moveCrosshair(null));
  stage.on("mouseup touchend", finishPointer);
  window.addEventListener("mouseup", finishPointer);
  stage.on("wheel", (e) => {
    e.evt.preventDefault();
    zoomAt(stage.getPointerPosition(), e.evt.deltaY < 0 ? 1.15 : 1 / 1.15);
  });
  wrap.addEventListener("auxclick", (e) => e.preventDefault());
  wrap.addEventListener("mousedown", (e) => { if (e.button === 1) e.preventDefault(); });
  window.addEventListener("resize", () => { if (state.current) fit(); });

  // --- keyboard --------------------------------------------------------------------------------------------------
  const modalOpen = () => document.querySelector(".modal.show") !== null;
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement || t.isContentEditable) return;
    if (e.key === "?") { e.preventDefault(); bootstrap.Modal.getOrCreateInstance($("help-modal")).toggle(); return; }
    if (modalOpen()) return;
    const ctrl = e.ctrlKey || e.metaKey;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (ctrl && key === "z") { e.preventDefault(); (e.shiftKey ? redo : undo)(); return; }
    if (ctrl && key === "y") { e.preventDefault(); redo(); return; }
    if (ctrl || e.altKey) return;
    if (key === " ") { e.preventDefault(); state.spaceHeld = true; wrap.classList.add("space-held"); return; }
    if (key === "Enter" && t instanceof HTMLButtonElement) return; // the focused button handles its own Enter
    if (key === "b" || key === "[") { e.preventDefault(); back(); return; }
    if (key === "m") { e.preventDefault(); if (state.selected !== null) openClassMenu(state.selected); return; }
    if (REVIEW) {
      if (key === "a" && e.shiftKey) { e.preventDefault(); acceptSuggestions(); return; }
      if (key === "a" || key === "Enter") { e.preventDefault(); decide("approve"); return; }
      if (key === "r") { e.preventDefault(); $("review-comment").focus(); return; }
    } else {
      if (key === "n" || key === "Enter") { e.preventDefault(); submit(); return; }
      if (key === "s") { e.preventDefault(); skip(); return; }
      if (key === "a") { e.preventDefault(); acceptSuggestions(); return; }
    }
    if (key === "f" || key === "0") { e.preventDefault(); fit(); return; }
    if (key === "+" || key === "=") { zoomAt({ x: stage.width() / 2, y: stage.height() / 2 }, 1.25); return; }
    if (key === "-") { zoomAt({ x: stage.width() / 2, y: stage.height() / 2 }, 0.8); return; }
    if (/^[1-9]$/.test(key)) { e.preventDefault(); pickClass(Number(key) - 1); return; }
    if (key === "Delete" || key === "Backspace") { e.preventDefault(); deleteSelected(); return; }
    if (key === "Escape") {
      if (state.drawing) { state.drawing = null; drawRect.visible(false); wrap.classList.remove("drawing"); }
      state.selected = null; render(); return;
    }
    if (key === "Tab") { e.preventDefault(); selectNext(e.shiftKey ? -1 : 1); return; }
    const step = e.shiftKey ? 10 : 1;
    const arrows = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (arrows[key] && state.selected !== null) { e.preventDefault(); nudge(...arrows[key]); }
  });
  document.addEventListener("keyup", (e) => {
    if (e.key === " ") { state.spaceHeld = false; wrap.classList.remove("space-held"); }
  });

  // --- drafts ----------------------------------------------------------------------------------------------------
  function payloadBoxes() {
    return state.boxes.map((b) => ({ label: b.label, box: b.box.map(round2) }));
  }
  function scheduleDraft() {
    if (REVIEW) { $("save-state").textContent = "edited (saved when you approve)"; return; }
    clearTimeout(state.draftTimer);
    state.draftTimer = setTimeout(() => saveDraft(), DRAFT_DEBOUNCE_MS);
    $("save-state").textContent = "unsaved changes";
  }
  async function saveDraft({ keepalive = false } = {}) {
    clearTimeout(state.draftTimer);
    if (REVIEW || !state.current || !state.dirty || state.readOnly) return;
    const id = state.current.id;
    state.draftInFlight = api("PUT", urlFor("draft", id), { boxes: payloadBoxes(), base_version: state.version }, { keepalive });
    const r = await state.draftInFlight.catch(() => ({ ok: false }));
    state.draftInFlight = null;
    if (state.current && state.current.id === id) {
      $("save-state").textContent = r.ok ? `draft saved ${new Date().toLocaleTimeString()}` : "draft NOT saved";
    }
  }
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") saveDraft({ keepalive: true }); });
  window.addEventListener("pagehide", () => {
    saveDraft({ keepalive: true });
    // The prefetched image was never shown: give it back so a colleague gets it now, not in 10 minutes.
    if (state.prefetched) api("POST", urlFor("release", state.prefetched.bundle.id), {}, { keepalive: true });
  });

  // --- showing images, queue -------------------------------------------------------------------------------------
  function preload(bundle) {
    const img = new window.Image();
    img.src = bundle.url;
    return img;
  }
  // Whether the image loaded (true) or failed (false). A prefetched image may have loaded or failed long before it
  // is shown, when no listener was there to hear it: `complete` is then already true, and naturalWidth says which.
  function whenLoaded(img) {
    return new Promise((resolve) => {
      const settle = () => resolve(img.naturalWidth > 0);
      if (img.complete) { settle(); return; }
      img.addEventListener("load", settle, { once: true });
      img.addEventListener("error", settle, { once: true });
    });
  }
  const failed = (img) => img.complete && !img.naturalWidth;

  // The image could not be loaded: say so on the canvas, with a way on (the next image, a reload), instead of an
  // empty canvas that waits forever. Its boxes are not shown: nothing can be judged or drawn without the image.
  async function showBroken(bundle) {
    state.broken = true;
    state.boxes = [];
    state.suggestions = [];
    imageNode.image(null);
    fit();
    $("save-state").textContent = "";
    $("image-error-title").textContent = `Image #${bundle.id} could not be loaded`;
    $("image-error-why").textContent = "Checking why…";
    $("image-error").hidden = false;
    let why = "The browser could not load or decode it.";
    try {
      const r = await fetch(bundle.url, { credentials: "same-origin", cache: "no-store" });
      r.body?.cancel().catch(() => {});
      if (r.status === 404) why = "Its file is missing on the server (404).";
      else if (!r.ok) why = `The server answered ${r.status}.`;
      else why = "The server sent it, but the browser could not decode it.";
    } catch (err) {
      why = "The server could not be reached.";
    }
    if (state.current === bundle) $("image-error-why").textContent = why;
  }
  // The error's "next image": labeling skips it (it comes back later, perhaps repaired); review opens the next
  // submitted image of this page's queue, or the suspects list on the suspects walk.
  function nextAfterBroken() {
    if (!REVIEW) { skip(); return; }
    if (cfg.suspects) { location.href = cfg.urls.suspects_page; return; }
    const ids = cfg.waiting_ids;
    const at = ids.indexOf(state.current ? state.current.id : null);
    const next = ids.slice(at + 1).concat(ids.slice(0, Math.max(at, 0))).find((id) => !state.current || id !== state.current.id);
    if (next === undefined) { location.href = $("image-error-next").dataset.noneLeft; return; } // back to review
    const url = new URL(cfg.next_url, location.href);
    url.searchParams.set("image", next);
    const trail = JSON.parse(sessionStorage.getItem(REVIEW_TRAIL_KEY) || "[]");
    if (state.current && trail[trail.length - 1] !== state.current.id) trail.push(state.current.id);
    sessionStorage.setItem(REVIEW_TRAIL_KEY, JSON.stringify(trail.slice(-50)));
    location.href = url.href;
  }
  $("image-error-next").addEventListener("click", nextAfterBroken);
  $("image-error-reload").addEventListener("click", () => location.reload());

  async function show(bundle, img) {
    clearTimeout(state.draftTimer);
    clearNotices();
    $("empty-queue").hidden = true;
    $("image-error").hidden = true;
    state.current = bundle;
    state.broken = false;
    state.undo = [];
    state.redo = [];
    state.selected = null;
    state.dirty = false;
    state.version = bundle.annotation.version;
    state.boxes = bundle.annotation.boxes.map(withUid);
    state.suggestions = !REVIEW && bundle.suggestions ? bundle.suggestions.boxes.slice() : [];
    state.readOnly = bundle.read_only || null;
    if (REVIEW && !["submitted", "approved"].includes(bundle.status)) {
      state.readOnly = `This image is ${bundle.status}: only submitted or approved images are reviewed.`;
    }
    if (state.readOnly) notice("secondary", esc(state.readOnly), { key: "read-only" });
    if (REVIEW) {
      showSuspect(bundle);
      $("queue-position").textContent = `labeled by ${bundle.annotation.updated_by || "unknown"} · ${bundle.annotation.boxes.length} boxes`;
    }
    if (bundle.draft && !REVIEW && !state.readOnly) {
      state.boxes = bundle.draft.boxes.map(withUid);
      if (bundle.draft.base_version !== bundle.annotation.version) {
        // Keep the draft's base: submitting then meets the 409 dialog instead of overwriting silently.
        state.version = bundle.draft.base_version;
        notice("warning", `Restored your unsaved draft, but ${esc(bundle.annotation.updated_by || "someone")} saved version ${bundle.annotation.version} since. Submitting will ask what to do.`, { key: "draft" });
      } else {
        notice("info", "Restored your unsaved draft of this image.", { key: "draft", timeout: 6000 });
      }
    }
    if (state.boxes.length && !REVIEW) state.suggestions = []; // suggestions help only an unlabeled image
    if (bundle.rejection) {
      notice("danger", `<strong>Rejected by ${esc(bundle.rejection.reviewer || "a reviewer")}:</strong> ${esc(bundle.rejection.comment)}`, { key: "rejection" });
    }
    if (bundle.claim && !bundle.claim.mine && !REVIEW) {
      notice("warning", `${esc(bundle.claim.user)} is labeling this image right now; saving may conflict.`, { key: "claim" });
    }
    $("image-title").textContent = `Image #${bundle.id} · ${bundle.width}×${bundle.height}`;
    showStatus(bundle.status);
    const url = new URL(location.href);
    url.searchParams.set("image", bundle.id);
    history.replaceState(null, "", url);
    // A prefetched image that failed is asked for once more: the failure may have passed.
    state.imageEl = img && !failed(img) ? img : preload(bundle);
    const loaded = await whenLoaded(state.imageEl);
    if (state.current !== bundle) return;
    if (!loaded) { await showBroken(bundle); return; }
    imageNode.image(state.imageEl);
    imageNode.size({ width: bundle.width, height: bundle.height });
    fit();
    $("save-state").textContent = state.dirty ? "unsaved changes" : `version ${state.version}`;
    wrap.focus({ preventScroll: true });
  }

  function showStatus(status) {
    const statusBadge = $("image-status");
    statusBadge.textContent = status;
    statusBadge.className = `badge ${{ rejected: "text-bg-danger", submitted: "text-bg-info", approved: "text-bg-success" }[status] || "text-bg-secondary"}`;
    if (REVIEW) {
      // Rejecting an approved image reopens it (the comment says why); the buttons say so.
      const reopen = status === "approved";
      $("reject-btn").innerHTML = `${reopen ? "Reopen" : "Reject"} <kbd>R</kbd>`;
      $("reject-btn").title = reopen ? "Reopen: back to its annotator with your comment (R)" : "Reject with a comment (R)";
      $("review-comment").placeholder = reopen ? "Why reopen it? What should be fixed?" : "What should be fixed?";
    }
  }

  // The empty queue: nothing can be edited, and the page says why (skips come back later, others are labeling…).
  function showEmpty(why) {
    state.current = null;
    state.boxes = [];
    state.suggestions = [];
    state.selected = null;
    state.undo = [];
    state.redo = [];
    state.broken = false;
    $("image-error").hidden = true;
    imageNode.image(null);
    render();
    $("image-title").textContent = "queue empty";
    $("image-status").textContent = "";
    $("image-status").className = "badge";
    $("queue-position").textContent = "";
    if (why) {
      const parts = ["Nothing is waiting for you in this dataset."];
      if (why.skipped) {
        const at = why.skipped_return_at ? new Date(why.skipped_return_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
        parts.push(`You skipped ${why.skipped} image${why.skipped === 1 ? "" : "s"}; ${why.skipped === 1 ? "it comes" : "the first comes"} back to you${at ? ` at ${at}` : " later"}.`);
      }
      if (why.claimed_by_others) parts.push(`${why.claimed_by_others} ${why.claimed_by_others === 1 ? "is" : "are"} being labeled by others.`);
      if (why.to_review) parts.push(`${why.to_review} wait${why.to_review === 1 ? "s" : ""} for review.`);
      $("empty-why").textContent = parts.join(" ");
    }
    $("empty-queue").hidden = false;
    const url = new URL(location.href);
    url.searchParams.delete("image");
    history.replaceState(null, "", url);
  }

  async function claimNext(exclude) {
    const r = await api("POST", cfg.urls.next, { exclude });
    if (!r.ok) { notice("danger", esc(errorText(r))); return null; }
    updateCounts(r.body.counts);
    state.emptyWhy = r.body.empty;
    return r.body.image;
  }
  async function prefetch() {
    const from = state.current;
    if (!from) return;
    const asked = ++state.prefetchAsked;
    const bundle = await claimNext([from.id]);
    // The page moved on while this was asked (a quick skip): the answer may be the image now shown. Drop it.
    if (asked !== state.prefetchAsked || state.current !== from) return;
    state.prefetched = bundle ? { bundle, img: preload(bundle) } : null;
  }
  async function advance() {
    const next = state.prefetched;
    state.prefetched = null;
    state.prefetchAsked += 1; // a prefetch still on its way answers for the image we are leaving
    if (next) {
      await show(next.bundle, next.img);
    } else {
      const bundle = await claimNext([]);
      if (!bundle) { showEmpty(state.emptyWhy); return; }
      await show(bundle);
    }
    prefetch();
  }
  // Open one image (from the grid, or going back). Someone else's image is taken over only when the person agrees;
  // otherwise, like an approved image for an annotator, it opens read-only.
  async function openImage(id) {
    let r = await api("POST", urlFor("image", id), {});
    let readOnly = null;
    const code = r.status === 409 && r.body && r.body.error ? r.body.error.code : null;
    if (code === "claimed") {
      const who = r.body.error.details.user;
      if (window.confirm(`${who} is labeling image #${id} right now. Take it over? Their unsaved work stays theirs, but they can no longer submit it.`)) {
        r = await api("POST", urlFor("image", id), { take_over: true });
      } else {
        readOnly = `${who} is labeling this image; you chose not to take it over, so it is read-only here.`;
        r = await api("GET", urlFor("image", id));
      }
    } else if (code === "approved") {
      r = await api("GET", urlFor("image", id));
    }
    if (!r.ok) { notice("danger", esc(errorText(r))); return advance(); }
    if (readOnly) r.body.read_only = readOnly;
    await show(r.body);
    if (!state.prefetched) prefetch();
  }
  function rememberShown() {
    if (state.current && state.trail[state.trail.length - 1] !== state.current.id) state.trail.push(state.current.id);
    if (state.trail.length > 50) state.trail.shift();
  }
  async function back() {
    if (REVIEW) {
      const trail = JSON.parse(sessionStorage.getItem(REVIEW_TRAIL_KEY) || "[]");
      const previous = trail.pop();
      if (previous === undefined) return;
      sessionStorage.setItem(REVIEW_TRAIL_KEY, JSON.stringify(trail));
      location.href = `${cfg.urls.review_page}?image=${previous}${cfg.suspects ? "&suspects=1" : ""}`;
      return;
    }
    const previous = state.trail.pop();
    if (previous === undefined || state.busy) return;
    state.busy = true;
    try {
      await saveDraft();
      const leaving = state.current;
      // Give the image on screen back unless it is next in line anyway (then it stays prefetched).
      if (leaving && !state.readOnly) {
        if (state.prefetched) api("POST", urlFor("release", state.prefetched.bundle.id), {});
        state.prefetched = { bundle: leaving, img: state.imageEl };
      }
      await openImage(previous);
    } finally {
      state.busy = false;
      render();
    }
  }

  async function submit() {
    if (!state.current || state.busy || state.broken) return;
    if (state.readOnly) { notice("secondary", esc(state.readOnly), { key: "read-only" }); return; }
    state.busy = true;
    clearTimeout(state.draftTimer);
    try {
      // A draft still on its way must land before the submit deletes drafts, or it would outlive the submit.
      if (state.draftInFlight) await state.draftInFlight.catch(() => null);
      const id = state.current.id;
      const r = await api("PUT", urlFor("annotations", id), { version: state.version, boxes: payloadBoxes() });
      if (r.ok) {
        state.done += 1;
        state.dirty = false;
        $("done-count").textContent = state.done;
        rememberShown();
        await advance();
        notice("success", `Saved image #${id} (version ${r.body.version}).`, { key: "saved", timeout: 2500 });
      } else if (r.status === 409 && r.body && r.body.error.code === "stale_version") {
        showConflict(r.body.error.details.current_version);
      } else if (r.status === 409 && r.body && r.body.error.code === "claimed") {
        const who = r.body.error.details.user;
        if (window.confirm(`${who} has taken this image (your claim had expired). Take it back and submit your boxes?`)) {
          const taken = await api("POST", urlFor("image", id), { take_over: true });
          if (taken.ok) { state.busy = false; return submit(); }
          notice("danger", `Not saved: ${esc(errorText(taken))}`, { key: "save-error" });
        } else {
          notice("warning", `Not saved: ${esc(who)} is labeling this image. Your draft is kept.`, { key: "save-error" });
        }
      } else {
        notice("danger", `Not saved: ${esc(errorText(r))}`, { key: "save-error" });
      }
    } catch (err) {
      notice("danger", `Not saved (network): ${esc(err.message)}. Your draft is kept.`, { key: "save-error" });
      scheduleDraft();
    } finally {
      state.busy = false;
    }
  }
  async function skip() {
    if (!state.current || state.busy) return;
    state.busy = true;
    try {
      await saveDraft();
      // Moving on from a read-only image is no skip (it was never this person's to label).
      if (!state.readOnly) await api("POST", urlFor("skip", state.current.id), {});
      rememberShown();
      await advance();
    } finally {
      state.busy = false;
    }
  }

  // --- conflicts -------------------------------------------------------------------------------------------------
  const conflictModal = bootstrap.Modal.getOrCreateInstance($("conflict-modal"));
  function showConflict(currentVersion) {
    state.conflictVersion = currentVersion;
    $("conflict-text").textContent = `Someone saved version ${currentVersion} of this image after you opened version ${state.version}. Load their boxes, or overwrite them with yours.`;
    conflictModal.show();
  }
  async function loadTheirs() {
    if (!state.current) return;
    const r = await api("GET", urlFor("annotations", state.current.id));
    if (!r.ok) { notice("danger", esc(errorText(r))); return; }
    commit(() => { state.boxes = r.body.boxes.map(withUid); }); // undo brings yours back
    state.version = r.body.version;
    state.selected = null;
    state.suggestions = [];
    notice("info", `Loaded version ${r.body.version}. Ctrl+Z brings your boxes back.`, { key: "theirs", timeout: 6000 });
    render();
  }
  $("conflict-load").addEventListener("click", async () => { conflictModal.hide(); await loadTheirs(); });
  $("conflict-overwrite").addEventListener("click", async () => {
    conflictModal.hide();
    state.version = state.conflictVersion; // an explicit choice, never a silent one
    await submit();
  });

  // --- review: approve / reject with the reviewer's edits, suspects, batch approval -------------------------------
  function showSuspect(bundle) {
    const panel = $("suspect-panel");
    const suspect = cfg.suspects || (bundle.suspect && !bundle.suspect.verdict) ? bundle.suspect : null;
    panel.hidden = !suspect;
    if (!suspect) return;
    state.suggestions = suspect.predictions.slice(); // the model's boxes, dashed: click one to take it
    const list = $("suspect-reasons");
    list.innerHTML = "";
    for (const reason of suspect.reasons) {
      const li = document.createElement("li");
      li.className = "list-group-item list-group-item-action py-1 px-2 suspect-reason";
      li.dataset.kind = reason.kind;
      li.innerHTML = `<span class="badge text-bg-warning me-1">${esc(reason.kind.replace("_", " "))}</span>${esc(reason.message)}`;
      li.addEventListener("click", () => {
        const box = reason.label && state.boxes.find((b) => b.label === reason.label && sameBox(b.box, reason.box));
        if (box) select(box.uid);
      });
      list.append(li);
    }
    if (suspect.verdict) {
      const li = document.createElement("li");
      li.className = "list-group-item py-1 px-2 text-muted";
      li.textContent = `Verdict: ${suspect.verdict} (${suspect.verdict_by || "a reviewer"})`;
      list.append(li);
    }
  }
  function goNext() {
    const trail = JSON.parse(sessionStorage.getItem(REVIEW_TRAIL_KEY) || "[]");
    if (state.current && trail[trail.length - 1] !== state.current.id) trail.push(state.current.id);
    sessionStorage.setItem(REVIEW_TRAIL_KEY, JSON.stringify(trail.slice(-50)));
    location.href = cfg.next_url;
  }
  async function decide(decision) {
    if (!REVIEW || !state.current || state.busy || state.readOnly || state.broken) return;
    const comment = $("review-comment").value;
    $("review-error").textContent = "";
    if (decision === "reject" && !comment.trim()) {
      $("review-error").textContent = "Write what should be fixed, then Ctrl+Enter.";
      $("review-comment").focus();
      return;
    }
    state.busy = true;
    try {
      const body = { decision, comment };
      const edited = state.dirty;
      if (edited) Object.assign(body, { boxes: payloadBoxes(), version: state.version });
      const r = await api("POST", urlFor("review", state.current.id), body);
      if (!r.ok) {
        $("review-error").textContent = errorText(r);
        if (r.status === 409 && r.body && r.body.error.code === "stale_version") {
          $("review-error").textContent = "Someone saved new boxes meanwhile: reload to see them (your edits are not saved).";
        }
        return;
      }
      state.dirty = false;
      const suspect = state.current.suspect;
      if (suspect && !suspect.verdict && decision === "approve") {
        await api("POST", urlFor("suspect", state.current.id), { verdict: edited ? "fixed" : "correct" });
      }
      goNext();
    } finally {
      state.busy = false;
    }
  }
  if (REVIEW) {
    $("approve-btn").addEventListener("click", () => decide("approve"));
    $("reject-btn").addEventListener("click", () => decide("reject"));
    $("review-comment").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); decide("reject"); }
      if (e.key === "Escape") { e.preventDefault(); wrap.focus({ preventScroll: true }); }
    });
    $("batch-approve-btn").addEventListener("click", async () => {
      const ids = cfg.waiting_ids;
      if (!ids.length || !window.confirm(`Approve all ${ids.length} submitted images shown (as they are, without opening them)?`)) return;
      const r = await api("POST", cfg.urls.review_batch, { image_ids: ids });
      if (!r.ok) { $("review-error").textContent = errorText(r); return; }
      notice("success", `Approved ${r.body.approved} images.`, { key: "batch" });
      location.href = cfg.next_url;
    });
  } else {
    $("sticky-class").addEventListener("change", (e) => {
      state.stickyClass = e.target.checked;
      localStorage.setItem(STICKY_KEY, state.stickyClass ? "1" : "0");
      wrap.focus({ preventScroll: true }); // the keys belong to the canvas again
    });
  }

  // --- heartbeat, live updates -----------------------------------------------------------------------------------
  if (!REVIEW) setInterval(async () => {
    // A read-only image is not held: renewing would claim an approved image or someone else's.
    const ids = [state.current && !state.readOnly && state.current.id, state.prefetched && state.prefetched.bundle.id].filter(Boolean);
    if (!ids.length) return;
    loadQueueState(); // also covers a dropped WebSocket
    const r = await api("POST", cfg.urls.renew, { image_ids: ids });
    if (!r.ok) return;
    for (const lost of r.body.lost) {
      if (state.current && lost.image_id === state.current.id) {
        notice("warning", `${esc(lost.user || "Someone")} has taken this image over (your claim had expired). Saving may conflict.`, { key: "claim" });
      } else if (state.prefetched && lost.image_id === state.prefetched.bundle.id) {
        state.prefetched = null;
        prefetch();
      }
    }
  }, HEARTBEAT_MS);

  function updateCounts(counts) {
    if (!counts) return;
    document.querySelectorAll("#queue-counts [data-count]").forEach((dd) => { dd.textContent = counts[dd.dataset.count]; });
    $("queue-position").textContent = `${counts.to_label} left to label`;
  }
  function renderClaims() {
    const list = $("working-list");
    list.innerHTML = "";
    if (!state.claims.size) { list.innerHTML = '<li class="text-muted">nobody</li>'; return; }
    for (const [imageId, user] of state.claims) {
      const li = document.createElement("li");
      const mine = user === cfg.user;
      li.innerHTML = `<strong>${esc(user)}</strong>${mine ? " (you)" : ""} · image <a href="?image=${imageId}">#${imageId}</a>`;
      list.append(li);
    }
  }
  async function loadQueueState() {
    const r = await api("GET", cfg.urls.queue);
    if (!r.ok) return;
    updateCounts(r.body.counts);
    state.claims = new Map(r.body.claims.map((c) => [c.image_id, c.user]));
    renderClaims();
  }
  if (window.VectorEvents && !REVIEW) {
    VectorEvents.follow(`dataset.${cfg.dataset}`, (event, data) => {
      if (event === "queue") updateCounts(data);
      if (event === "claim") {
        if (data.user) state.claims.set(data.image_id, data.user); else state.claims.delete(data.image_id);
        renderClaims();
      }
      if (event === "annotation" && data.user !== cfg.user) {
        if (state.current && data.image_id === state.current.id && data.version !== state.version) {
          const div = notice("warning", `${esc(data.user)} just saved version ${data.version} of this image. <button type="button" class="btn btn-sm btn-outline-dark ms-2">Load their boxes</button>`, { key: "remote" });
          div.querySelector("button").addEventListener("click", () => { div.remove(); loadTheirs(); });
        }
        if (state.prefetched && data.image_id === state.prefetched.bundle.id) { state.prefetched = null; prefetch(); }
      }
    });
  }

  // --- review: the queue and the image on screen, live ------------------------------------------------------------
  // Both follow the dataset's events, and both are fetched again each time the stream (re)connects, so what changed
  // while it was down (a submission, another reviewer's decision, new boxes) is on the page after all.
  let queueFetch = null; // one fetch at a time; events meanwhile ask for one more after it
  let queueAgain = false;
  function renderReviewQueue(q) {
    cfg.waiting_ids = q.waiting_ids; // what "approve all shown" approves
    $("review-waiting").textContent = q.waiting;
    $("batch-count").textContent = q.waiting;
    $("batch-approve-btn").disabled = !q.waiting;
    $("suspect-count").textContent = q.suspects;
    $("review-suspects").hidden = !q.suspects;
    // An empty page offers what arrived since (the same filters; suspects on the suspects walk).
    const waiting = cfg.suspects ? q.suspects : q.waiting;
    $("new-submissions-count").textContent = waiting;
    $("new-submissions").hidden = !(state.current === null && waiting);
  }
  function loadReviewQueue() {
    if (queueFetch) { queueAgain = true; return queueFetch; }
    queueFetch = (async () => {
      do {
        queueAgain = false;
        const r = await api("GET", cfg.urls.review_queue);
        if (r.ok) renderReviewQueue(r.body);
      } while (queueAgain);
    })().finally(() => { queueFetch = null; });
    return queueFetch;
  }
  async function refreshCurrent(cause = {}) {
    if (!state.current) return;
    const shown = state.current;
    const r = await api("GET", urlFor("image", shown.id));
    if (!r.ok || state.current !== shown) return;
    const fresh = r.body;
    if (fresh.status !== shown.status) {
      shown.status = fresh.status;
      showStatus(fresh.status);
      const who = cause.reviewer ? ` by ${esc(cause.reviewer)}` : "";
      if (["submitted", "approved"].includes(fresh.status)) {
        state.readOnly = null;
        notice("warning", `Meanwhile this image was ${esc(fresh.status)}${who}.`, { key: "remote-status" });
      } else {
        state.readOnly = `This image is ${fresh.status}: only submitted or approved images are reviewed.`;
        notice("warning", `Meanwhile this image was ${esc(fresh.status)}${who}: it can no longer be reviewed here.`, { key: "remote-status" });
      }
      render();
    }
    if (fresh.annotation.version !== shown.annotation.version && !state.broken) { // no boxes without the image
      shown.annotation = fresh.annotation;
      $("queue-position").textContent = `labeled by ${fresh.annotation.updated_by || "unknown"} · ${fresh.annotation.boxes.length} boxes`;
      const who = esc(fresh.annotation.updated_by || "Someone");
      if (!state.dirty) {
        // Nothing of the reviewer's would be lost: show the new boxes.
        state.version = fresh.annotation.version;
        state.boxes = fresh.annotation.boxes.map(withUid);
        state.selected = null;
        state.undo = [];
        state.redo = [];
        render();
        $("save-state").textContent = `version ${state.version}`;
        notice("info", `${who} saved version ${fresh.annotation.version} of this image meanwhile: it is shown now.`, { key: "remote" });
      } else {
        const div = notice("warning", `${who} saved version ${fresh.annotation.version} of this image meanwhile. <button type="button" class="btn btn-sm btn-outline-dark ms-2">Load their boxes</button>`, { key: "remote" });
        div.querySelector("button").addEventListener("click", () => { div.remove(); loadTheirs(); });
      }
    }
    $("notices").querySelectorAll('[data-key="claim"]').forEach((n) => n.remove());
    if (fresh.claim && !fresh.claim.mine) {
      notice("warning", `${esc(fresh.claim.user)} is editing this image right now.`, { key: "claim" });
    }
  }
  if (window.VectorEvents && REVIEW) {
    VectorEvents.follow(
      `dataset.${cfg.dataset}`,
      (event, data) => {
        if (event === "queue" || event === "suspect") loadReviewQueue();
        if (!state.current) return;
        const here = data.image_id === state.current.id;
        if (event === "review" && data.reviewer !== cfg.user && (here || data.batch)) refreshCurrent(data);
        if (event === "annotation" && here && data.user !== cfg.user) refreshCurrent();
        if (event === "claim" && here) refreshCurrent();
      },
      { resync: () => Promise.all([loadReviewQueue(), refreshCurrent()]) },
    );
  }

  // --- toolbar ---------------------------------------------------------------------------------------------------
  $("undo-btn").addEventListener("click", undo);
  $("redo-btn").addEventListener("click", redo);
  $("delete-btn").addEventListener("click", deleteSelected);
  $("fit-btn").addEventListener("click", fit);
  $("accept-btn").addEventListener("click", acceptSuggestions);
  $("back-btn").addEventListener("click", back);
  if (!REVIEW) {
    $("submit-btn").addEventListener("click", submit);
    $("skip-btn").addEventListener("click", skip);
  }
  $("help-btn").addEventListener("click", () => bootstrap.Modal.getOrCreateInstance($("help-modal")).show());
  // Give the keyboard back to the canvas after a toolbar click, so Enter / Space mean submit / pan again.
  document.querySelectorAll(".label-toolbar button").forEach((b) => b.addEventListener("click", () => wrap.focus({ preventScroll: true })));

  // For tests and debugging: the tool's state and where the image is drawn on the page.
  window.labelTool = {
    state,
    ready: false,
    imageRect() {
      const r = imageNode.getClientRect();
      const c = stage.container().getBoundingClientRect();
      return { x: c.left + r.x, y: c.top + r.y, width: r.width, height: r.height };
    },
    tagRect(uid) { // where a box's label tag is drawn on the page (it opens the class menu)
      const node = stage.findOne(`#tag-${uid}`);
      const r = node.getClientRect();
      const c = stage.container().getBoundingClientRect();
      return { x: c.left + r.x, y: c.top + r.y, width: r.width, height: r.height };
    },
    crosshairVisible: () => crossH.visible(),
    waitingIds: () => cfg.waiting_ids, // what "approve all shown" approves (review)
  };

  buildClassList();
  if (REVIEW) {
    state.trail = JSON.parse(sessionStorage.getItem(REVIEW_TRAIL_KEY) || "[]");
    render();
    (cfg.bundle ? show(cfg.bundle) : Promise.resolve(showEmpty(null))).then(() => { window.labelTool.ready = true; render(); });
  } else {
    render();
    loadQueueState();
    (cfg.start_image ? openImage(cfg.start_image) : advance()).then(() => {
      window.labelTool.ready = true;
      loadQueueState(); // now including this page's own claims
    });
  }
})();
