// Image editor: paint prompts on a canvas, saved to the API as they are drawn.
// Coordinates: image pixels, x right, y down (the API's [[x, y], ...] form).
import { API, api, apiAll, h, pageData, typing, verdictBadge, errorText, toast } from "./api.js";
import { loadImages, loadPredictions, loadProject, classesOf, normPrediction, reviewOrder } from "./shapes.js";
import { setupRun } from "./run.js";
import { shownModel, chooseShown, modelLabel } from "./lifecycle.js";
import { loadImage, touches } from "./canvas.js";
import { segmenter } from "./segment.js";

const PD = pageData();
const pid = PD.project_id;
const iid = PD.image_id;
const W = PD.width, H = PD.height;
const canEdit = PD.can_edit;
const BACKGROUND = "background";
const BG_COLOUR = "#22c3d6";
const classes = classesOf({ classes: PD.classes });
const colourOf = (label) => (label === BACKGROUND ? BG_COLOUR : (classes.find((c) => c.name === label) || { colour: "#e5484d" }).colour);

const canvas = document.getElementById("canvas");
const wrap = document.getElementById("canvas-wrap");
const ctx = canvas.getContext("2d");
const hud = document.getElementById("hud");
const statusEl = document.getElementById("status");

const state = {
  tool: "brush",
  label: classes.length ? classes[0].name : BACKGROUND,
  radius: Math.max(2, Math.round(Math.min(W, H) / 70)),
  opacity: 0.6,
  showPrompts: true,
  scale: 1, ox: 0, oy: 0,
  prompts: [],          // {id, kind, label, points, radius, positive, _hidden}
  drawing: null,        // in-progress stroke/box/eraser
  undo: [], redo: [],
  img: null, overlay: null, samMask: null,
  prediction: null,
  panning: null, space: false,
};

// ---------------------------------------------------------------- drawing
function resize() {
  const dpr = window.devicePixelRatio || 1;
  const r = wrap.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(r.width * dpr));
  canvas.height = Math.max(1, Math.round(r.height * dpr));
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  draw();
}
function fit() {
  const r = wrap.getBoundingClientRect();
  state.scale = Math.min((r.width - 20) / W, (r.height - 20) / H);
  state.ox = (r.width - W * state.scale) / 2;
  state.oy = (r.height - H * state.scale) / 2;
  draw();
}
function toImage(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left - state.ox) / state.scale, (e.clientY - r.top - state.oy) / state.scale];
}
const clampX = (x) => Math.min(W - 0.01, Math.max(0, x));
const clampY = (y) => Math.min(H - 0.01, Math.max(0, y));

function drawPrompt(p, { alpha = 0.7 } = {}) {
  const col = colourOf(p.label);
  ctx.save();
  ctx.globalAlpha = alpha;
  ctx.strokeStyle = col; ctx.fillStyle = col;
  if (p.kind === "stroke") {
    ctx.lineWidth = 2 * p.radius; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath();
    p.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (p.points.length === 1) ctx.lineTo(p.points[0][0] + 0.01, p.points[0][1]);
    ctx.stroke();
  } else if (p.kind === "point") {
    const [x, y] = p.points[0];
    const r = Math.max(3, 6 / state.scale);
    ctx.globalAlpha = 1;
    ctx.beginPath(); ctx.arc(x, y, r, 0, Math.PI * 2);
    ctx.fillStyle = p.positive === false ? "#111" : col; ctx.fill();
    ctx.lineWidth = 2 / state.scale; ctx.strokeStyle = "#fff"; ctx.stroke();
  } else if (p.kind === "polygon") {
    ctx.globalAlpha = alpha * 0.6;
    ctx.beginPath();
    p.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath(); ctx.fill();
    ctx.globalAlpha = 1; ctx.lineWidth = 1.5 / state.scale; ctx.stroke();
  } else if (p.kind === "box") {
    const [[x0, y0], [x1, y1]] = p.points;
    ctx.globalAlpha = 1; ctx.lineWidth = 2 / state.scale; ctx.setLineDash([6 / state.scale, 4 / state.scale]);
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  }
  ctx.restore();
}

function draw() {
  const r = wrap.getBoundingClientRect();
  ctx.save();
  ctx.clearRect(0, 0, r.width, r.height);
  ctx.translate(state.ox, state.oy);
  ctx.scale(state.scale, state.scale);
  ctx.imageSmoothingEnabled = state.scale < 1;
  if (state.img) ctx.drawImage(state.img, 0, 0, W, H);
  if (state.anomaly && state.showAnomaly) ctx.drawImage(state.anomaly, 0, 0, W, H);
  if (state.overlay && state.opacity > 0) {
    ctx.globalAlpha = state.opacity;
    ctx.drawImage(state.overlay, 0, 0, W, H);
    ctx.globalAlpha = 1;
  }
  if (state.gtMask) ctx.drawImage(state.gtMask, 0, 0, W, H);
  if (state.samMask) { ctx.globalAlpha = 0.55; ctx.drawImage(state.samMask, 0, 0, W, H); ctx.globalAlpha = 1; }
  if (state.showPrompts) for (const p of state.prompts) if (!p._hidden) drawPrompt(p);
  const d = state.drawing;
  if (d && d.kind === "stroke") drawPrompt(d);
  if (d && d.kind === "box") drawPrompt(d);
  if (d && d.kind === "eraser") {
    ctx.save(); ctx.globalAlpha = 0.35; ctx.strokeStyle = "#fff"; ctx.lineWidth = 2 * d.radius; ctx.lineCap = "round";
    ctx.beginPath(); d.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.stroke(); ctx.restore();
  }
  // the region a "next step" link points at (?focus=x0,y0,x1,y1)
  if (state.focus) {
    const [x0, y0, x1, y1] = state.focus;
    ctx.save(); ctx.lineWidth = 2 / state.scale; ctx.strokeStyle = "#ffd24a"; ctx.setLineDash([6 / state.scale, 4 / state.scale]);
    ctx.strokeRect(x0 - 3, y0 - 3, x1 - x0 + 6, y1 - y0 + 6); ctx.restore();
  }
  // image border
  ctx.lineWidth = 1 / state.scale; ctx.strokeStyle = "rgba(255,255,255,.25)"; ctx.strokeRect(0, 0, W, H);
  ctx.restore();
  // brush cursor
  if (state.cursor && (state.tool === "brush" || state.tool === "eraser")) {
    const [cx, cy] = state.cursor;
    ctx.beginPath();
    ctx.arc(cx * state.scale + state.ox, cy * state.scale + state.oy, state.radius * state.scale, 0, Math.PI * 2);
    ctx.strokeStyle = state.tool === "eraser" ? "#fff" : colourOf(state.label); ctx.lineWidth = 1.5; ctx.stroke();
  }
  hud.textContent = canEdit
    ? `${Math.round(state.scale * 100)} % · ${state.tool}${state.tool === "brush" || state.tool === "eraser" ? " " + state.radius + " px" : ""} · ${state.label}`
    : `${Math.round(state.scale * 100)} % · read only`;
}

function setStatus(text, kind = "") {
  statusEl.classList.toggle("hidden", !text);
  statusEl.textContent = text || "";
  statusEl.dataset.kind = kind;
}

// ---------------------------------------------------------------- prompts I/O
function toPayload(p) {
  const out = { kind: p.kind, label: p.label, points: p.points.map(([x, y]) => [Math.round(x * 100) / 100, Math.round(y * 100) / 100]) };
  if (p.kind === "stroke") out.radius = p.radius;
  if (p.kind === "point") out.positive = p.positive !== false;
  return out;
}
function fromServer(s) {
  const d = s.data || s;
  return { id: s.id, kind: s.kind || d.kind, label: s.label || d.label, points: d.points, radius: d.radius ?? 1, positive: d.positive ?? true };
}
async function savePrompt(p) {
  const res = await api(`/images/${iid}/prompts/`, { method: "POST", body: toPayload(p) });
  p.id = res.id;
  return p;
}
async function deletePrompt(p) {
  if (p.id) await api(`/prompts/${p.id}/`, { method: "DELETE" }).catch((ex) => { if (ex.status !== 404) throw ex; });
  p.id = null;
}
function updateCount() {
  const n = state.prompts.filter((p) => !p._hidden).length;
  document.getElementById("prompt-count").textContent = `${n} prompt${n === 1 ? "" : "s"} on this image`;
}

async function addPrompt(p) {
  state.prompts.push(p);
  state.redo = [];
  draw();
  try {
    await savePrompt(p);
    state.undo.push({ type: "add", prompts: [p] });
  } catch (ex) {
    state.prompts = state.prompts.filter((q) => q !== p);
    toast(`Prompt not saved: ${errorText(ex.body) || ex.message}`, { error: true });
  }
  updateCount(); draw();
  // points and boxes always show a mask: SAM's when configured, else the backbone network's
  if (p.kind === "point" || p.kind === "box") masks.segment(p.label);
}

async function undo() {
  const e = state.undo.pop();
  if (!e) return;
  try {
    if (e.type === "add") {
      for (const p of e.prompts) { await deletePrompt(p); state.prompts = state.prompts.filter((q) => q !== p); }
    } else {
      for (const p of e.prompts) { await savePrompt(p); p._hidden = false; state.prompts.push(p); }
    }
    state.redo.push(e);
  } catch (ex) { toast(ex.message, { error: true }); state.undo.push(e); }
  updateCount(); draw();
}
async function redo() {
  const e = state.redo.pop();
  if (!e) return;
  try {
    if (e.type === "add") {
      for (const p of e.prompts) { await savePrompt(p); p._hidden = false; state.prompts.push(p); }
    } else {
      for (const p of e.prompts) { await deletePrompt(p); state.prompts = state.prompts.filter((q) => q !== p); }
    }
    state.undo.push(e);
  } catch (ex) { toast(ex.message, { error: true }); state.redo.push(e); }
  updateCount(); draw();
}

// ---------------------------------------------------------------- points and boxes -> a mask
const masks = segmenter({ iid, W, H, canvas, state, toPayload, colourOf, setStatus, draw, background: BACKGROUND });
// the mask shown becomes training labels: its outlines saved as polygons of its class,
// the points and boxes that made it removed (two undo steps: the polygons, the clicks)
async function acceptMask() {
  const shown = await masks.polygons();
  if (!shown || !shown.polygons.length) return;
  const used = state.prompts.filter((p) => !p._hidden && (p.kind === "point" || p.kind === "box"));
  const added = [], removed = [];  // what the server took: a failure part-way keeps the rest
  try {
    for (const points of shown.polygons) added.push(await savePrompt({ kind: "polygon", label: shown.label, points }));
    for (const p of used) { await deletePrompt(p); p._hidden = true; removed.push(p); }
  } catch (ex) { toast(`Mask not saved: ${errorText(ex.body) || ex.message}`, { error: true }); }
  state.prompts = state.prompts.filter((p) => !removed.includes(p)).concat(added);
  if (removed.length) state.undo.push({ type: "erase", prompts: removed });
  if (added.length) state.undo.push({ type: "add", prompts: added });
  state.redo = [];
  masks.clear(); updateCount();
  setStatus(`${added.length} polygon${added.length === 1 ? "" : "s"} of ${shown.label} saved as labels`);
}
masks.onAccept(acceptMask);

// ---------------------------------------------------------------- input
let pointerDown = false;
canvas.addEventListener("pointerdown", (e) => {
  canvas.focus();
  const [x, y] = toImage(e);
  if (e.button === 1 || state.tool === "pan" || state.space) {
    state.panning = { sx: e.clientX, sy: e.clientY, ox: state.ox, oy: state.oy };
    canvas.setPointerCapture(e.pointerId); return;
  }
  if (e.button !== 0 || !canEdit) return;
  pointerDown = true;
  canvas.setPointerCapture(e.pointerId);
  if (state.tool === "brush") state.drawing = { kind: "stroke", label: state.label, radius: state.radius, points: [[clampX(x), clampY(y)]] };
  else if (state.tool === "eraser") { state.drawing = { kind: "eraser", radius: state.radius, points: [[x, y]], hit: new Set() }; eraseAt(x, y); }
  else if (state.tool === "box") state.drawing = { kind: "box", label: state.label, points: [[clampX(x), clampY(y)], [clampX(x), clampY(y)]] };
  else if (state.tool === "point") {
    pointerDown = false;
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    addPrompt({ kind: "point", label: state.label, points: [[x, y]], radius: 1, positive: !e.shiftKey });
  }
  draw();
});
function eraseAt(x, y) {
  const d = state.drawing;
  for (const p of state.prompts) if (!p._hidden && touches(p, x, y, d.radius, state.scale)) { p._hidden = true; d.hit.add(p); }
}
canvas.addEventListener("pointermove", (e) => {
  const [x, y] = toImage(e);
  state.cursor = [x, y];
  if (state.panning) {
    state.ox = state.panning.ox + e.clientX - state.panning.sx;
    state.oy = state.panning.oy + e.clientY - state.panning.sy;
    draw(); return;
  }
  const d = state.drawing;
  if (pointerDown && d) {
    if (d.kind === "stroke") {
      const last = d.points[d.points.length - 1];
      const nx = clampX(x), ny = clampY(y);
      if (Math.hypot(nx - last[0], ny - last[1]) >= 0.75 && d.points.length < 9999) d.points.push([nx, ny]);
    } else if (d.kind === "eraser") { d.points.push([x, y]); eraseAt(x, y); }
    else if (d.kind === "box") d.points[1] = [clampX(x), clampY(y)];
  }
  draw();
});
async function finish() {
  const d = state.drawing;
  pointerDown = false;
  state.drawing = null;
  if (!d) return;
  if (d.kind === "stroke") await addPrompt({ kind: "stroke", label: d.label, radius: d.radius, points: d.points });
  else if (d.kind === "box") {
    const [[x0, y0], [x1, y1]] = d.points;
    if (Math.abs(x1 - x0) >= 2 && Math.abs(y1 - y0) >= 2)
      await addPrompt({ kind: "box", label: d.label, points: [[Math.min(x0, x1), Math.min(y0, y1)], [Math.max(x0, x1), Math.max(y0, y1)]] });
  } else if (d.kind === "eraser" && d.hit.size) {
    const gone = [...d.hit];
    state.prompts = state.prompts.filter((p) => !d.hit.has(p));
    try {
      for (const p of gone) await deletePrompt(p);
      state.undo.push({ type: "erase", prompts: gone });
      state.redo = [];
    } catch (ex) { toast(ex.message, { error: true }); }
    gone.forEach((p) => { p._hidden = false; });
    updateCount();
  }
  draw();
}
canvas.addEventListener("pointerup", (e) => { if (state.panning) { state.panning = null; return; } finish(); });
canvas.addEventListener("pointercancel", () => { state.panning = null; finish(); });
canvas.addEventListener("pointerleave", () => { state.cursor = null; draw(); });
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX, e.clientY);
}, { passive: false });
function zoomAt(f, clientX, clientY) {
  const r = canvas.getBoundingClientRect();
  const cx = clientX == null ? r.width / 2 : clientX - r.left;
  const cy = clientY == null ? r.height / 2 : clientY - r.top;
  const ns = Math.min(40, Math.max(0.05, state.scale * f));
  state.ox = cx - (cx - state.ox) * (ns / state.scale);
  state.oy = cy - (cy - state.oy) * (ns / state.scale);
  state.scale = ns;
  draw();
}

// ---------------------------------------------------------------- toolbox
function setTool(t) {
  state.tool = t;
  document.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("active", b.dataset.tool === t));
  canvas.style.cursor = t === "pan" ? "grab" : t === "point" || t === "box" ? "crosshair" : "none";
  draw();
}
function setLabel(l) {
  state.label = l;
  document.querySelectorAll("[data-label]").forEach((b) => b.classList.toggle("active", b.dataset.label === l));
  if (state.tool === "eraser" || state.tool === "pan") setTool("brush");
  draw();
}
function setRadius(r) {
  state.radius = Math.max(1, Math.min(80, Math.round(r)));
  const s = document.getElementById("brush-size");
  if (s) { s.value = state.radius; document.getElementById("brush-size-val").textContent = state.radius; }
  draw();
}
const labelsBox = document.getElementById("labels");
if (labelsBox) {
  for (const c of classes)
    labelsBox.append(h("button", { class: "tool", "data-label": c.name, "data-testid": `label-${c.name}`, onclick: () => setLabel(c.name) },
      h("span", { class: "swatch", style: `background:${c.colour}` }), c.name));
  labelsBox.append(h("button", { class: "tool", "data-label": BACKGROUND, "data-testid": "label-background", onclick: () => setLabel(BACKGROUND) },
    h("span", { class: "swatch", style: `background:${BG_COLOUR}` }), "background"));
  document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  document.getElementById("brush-size").addEventListener("input", (e) => setRadius(Number(e.target.value)));
  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("redo").addEventListener("click", redo);
}
document.getElementById("zoom-in").addEventListener("click", () => zoomAt(1.25));
document.getElementById("zoom-out").addEventListener("click", () => zoomAt(0.8));
document.getElementById("zoom-fit").addEventListener("click", fit);
document.getElementById("toggle-prompts").addEventListener("click", (e) => {
  state.showPrompts = !state.showPrompts; e.currentTarget.classList.toggle("active", state.showPrompts); draw();
});
document.getElementById("toggle-prompts").classList.add("active");
document.getElementById("opacity").addEventListener("input", (e) => {
  state.opacity = Number(e.target.value) / 100;
  document.getElementById("opacity-val").textContent = `${e.target.value}%`;
  draw();
});

// ---------------------------------------------------------------- images, predictions
let siblings = [];
let predictions = new Map();
let shown = null;
document.getElementById("show-anomaly")?.addEventListener("change", (e) => { state.showAnomaly = e.target.checked; draw(); });
async function loadPrediction() {
  // the model the Images page shows (the candidate, unless the deployed one was chosen)
  shown = shownModel(await loadProject(pid));
  const preds = await loadPredictions(pid, shown ? shown.id : null);
  predictions = preds;
  state.prediction = preds.get(String(iid)) || null;
  const badge = document.getElementById("pred-badge");
  badge.replaceChildren(state.prediction ? verdictBadge(state.prediction.verdict, state.prediction.severity) : h("span", { class: "muted small" }, "not predicted"));
  const who = document.getElementById("pred-model");
  if (who) { who.textContent = shown ? `predictions of ${modelLabel(shown)}` : ""; who.dataset.model = shown ? shown.kind : ""; }
  const u = state.prediction ? state.prediction.uncertainty : null;
  document.getElementById("pred-uncertainty").textContent = u != null ? `unsure about ${(100 * u).toFixed(1)} % of the inspected area` : "";
  document.getElementById("decision-link").classList.toggle("hidden", !state.prediction);
  if (state.prediction) {
    const url = state.prediction.overlayUrl || `${API}/images/${iid}/overlay/?v=${state.prediction.id || Date.now()}`;
    state.overlay = await loadImage(url).catch(() => null);
    canvas.dataset.overlay = state.overlay ? String(state.prediction.id) : "";
    const a = state.prediction.anomalyUrl;
    state.anomaly = a ? await loadImage(a).catch(() => null) : null;
  } else { state.overlay = null; state.anomaly = null; canvas.dataset.overlay = ""; }
  const peak = state.prediction ? state.prediction.anomalyPeak : null;
  document.getElementById("anomaly-row").classList.toggle("hidden", peak == null);
  if (peak != null) document.getElementById("anomaly-peak").textContent = `anomaly score ${peak.toFixed(2)} (1.00 = the most unusual good part it learned from)`;
  draw();
  return preds;
}
async function loadFilmstrip(preds) {
  siblings = await loadImages(pid);
  const strip = document.getElementById("filmstrip");
  strip.replaceChildren(...siblings.map((im) => {
    const p = preds.get(String(im.id));
    return h("a", { href: `/projects/${pid}/images/${im.id}/`, class: String(im.id) === String(iid) ? "current" : "", title: im.name, "data-image-id": im.id },
      h("img", { src: p ? (p.overlayUrl || `${im.overlayUrl}?v=${p.id}`) : im.thumbUrl, alt: "" }),
      p ? h("span", { class: "dot " + (p.verdict === "NG" ? "ng" : "ok") }) : null);
  }));
}
function go(delta) {
  const i = siblings.findIndex((s) => String(s.id) === String(iid));
  const n = siblings[i + delta];
  if (n) window.location.href = `/projects/${pid}/images/${n.id}/`;
}
// U: the next image in review order (most uncertain first, as the overview's sort),
// after this one; from an image that is not in that order, its first image
function goUnsure() {
  const uncertainty = (im) => predictions.get(String(im.id))?.uncertainty;
  const order = reviewOrder(siblings.filter((im) => uncertainty(im) != null), uncertainty);
  const at = order.findIndex((im) => String(im.id) === String(iid));
  const n = order[at + 1];
  if (n) window.location.href = `/projects/${pid}/images/${n.id}/`;
  else setStatus(order.length ? "This is the least uncertain image." : "No predictions yet: press Run.");
}
document.getElementById("unsure-img").addEventListener("click", (e) => { e.preventDefault(); goUnsure(); });
document.getElementById("prev-img").addEventListener("click", (e) => { e.preventDefault(); go(-1); });
document.getElementById("next-img").addEventListener("click", (e) => { e.preventDefault(); go(1); });

const runner = setupRun({
  projectId: pid,
  root: document.getElementById("runbar"),
  onDone: async (job) => {
    if (job.result && job.result.model_version) chooseShown(pid, "candidate");
    const preds = await loadPrediction(); await loadFilmstrip(preds);
  },
});
if (runner && PD.active_job) runner.follow(PD.active_job);

// ---------------------------------------------------------------- ground truth (verdict, mask)
let gtInfo = null;
function gtRender() {
  const s = document.getElementById("gt-status");
  if (!gtInfo) return;
  s.textContent = `${gtInfo.verdict ? "verdict " + gtInfo.verdict : "no verdict"} · ${gtInfo.has_mask ? "mask uploaded" : "no mask"}`;
  document.getElementById("gt-verdict").value = gtInfo.verdict || "";
}
async function gtLoad() {
  gtInfo = await api(`/images/${iid}/`);
  gtRender();
  if (document.getElementById("gt-show").checked) await gtShowMask();
}
async function gtShowMask() {
  state.gtMask = null;
  if (document.getElementById("gt-show").checked && gtInfo && gtInfo.mask_url) {
    const img = await loadImage(`${gtInfo.mask_url}?t=${Date.now()}`).catch(() => null);
    if (img) {
      const off = document.createElement("canvas"); off.width = W; off.height = H;
      const o = off.getContext("2d"); o.drawImage(img, 0, 0, W, H);
      const px = o.getImageData(0, 0, W, H);
      for (let i = 0; i < W * H; i++) {
        const on = px.data[i * 4] > 127;
        px.data[i * 4] = 255; px.data[i * 4 + 1] = 230; px.data[i * 4 + 2] = 0; px.data[i * 4 + 3] = on ? 150 : 0;
      }
      o.putImageData(px, 0, 0);
      state.gtMask = off;
    }
  }
  draw();
}
async function gtPatch(form) {
  try { gtInfo = await api(`/images/${iid}/`, { method: "PATCH", form }); gtRender(); await gtShowMask(); toast("Ground truth saved"); }
  catch (ex) { toast(errorText(ex.body) || ex.message, { error: true }); gtRender(); }
}
document.getElementById("gt-show").addEventListener("change", gtShowMask);
if (canEdit) {
  document.getElementById("gt-verdict").addEventListener("change", (e) => { const f = new FormData(); f.append("verdict", e.target.value); gtPatch(f); });
  document.getElementById("gt-mask").addEventListener("change", (e) => {
    if (!e.target.files.length) return;
    const f = new FormData(); f.append("mask", e.target.files[0]); e.target.value = ""; gtPatch(f);
  });
  document.getElementById("gt-clear").addEventListener("click", () => { const f = new FormData(); f.append("clear_mask", "true"); gtPatch(f); });
}

// ---------------------------------------------------------------- keyboard
document.addEventListener("keydown", (e) => {
  if (typing(e)) return;
  const k = e.key;
  const mod = e.ctrlKey || e.metaKey;
  if (mod && (k === "z" || k === "Z")) { e.preventDefault(); if (!canEdit) return; (e.shiftKey ? redo : undo)(); return; }
  if (mod && (k === "y" || k === "Y")) { e.preventDefault(); if (canEdit) redo(); return; }
  if (mod || e.altKey) return;
  if (k === " ") { state.space = true; canvas.style.cursor = "grab"; e.preventDefault(); return; }
  if (canEdit) {
    if (k === "b" || k === "B") return setTool("brush");
    if (k === "e" || k === "E") return setTool("eraser");
    if (k === "p" || k === "P") return setTool("point");
    if (k === "x" || k === "X") return setTool("box");
    if (k === "[") return setRadius(state.radius - (state.radius > 10 ? 2 : 1));
    if (k === "]") return setRadius(state.radius + (state.radius >= 10 ? 2 : 1));
  }
  if (k === "h" || k === "H") return setTool("pan");
  if (k === "0") return fit();
  if (k === "+" || k === "=") return zoomAt(1.25);
  if (k === "-") return zoomAt(0.8);
  if (k === "ArrowLeft") return go(-1);
  if (k === "ArrowRight") return go(1);
  if (k === "u" || k === "U") return goUnsure();
  if ((k === "r" || k === "R") && runner) { e.preventDefault(); runner.run(); }
  if (k === "Enter" && canEdit) { e.preventDefault(); return acceptMask(); }
  if (k === ",") return masks.smaller();
  if (k === ".") return masks.larger();
  if (k === "Escape") masks.clear();
});
document.addEventListener("keyup", (e) => { if (e.key === " ") { state.space = false; setTool(state.tool); } });

// ---------------------------------------------------------------- start
async function start() {
  new ResizeObserver(() => { resize(); }).observe(wrap);
  resize();
  fit();
  setRadius(state.radius);
  setTool(canEdit ? "brush" : "pan");
  if (canEdit) setLabel(state.label);
  // what points and boxes need is computed on the worker while the image is looked at,
  // so the first click is answered as fast as the next (errors surface on the click)
  if (canEdit) {
    api(`/images/${iid}/segment/prepare/`, { method: "POST" })
      .then((res) => { canvas.dataset.segmentPrepared = res.ready ? "ready" : "preparing"; })
      .catch(() => { canvas.dataset.segmentPrepared = "unavailable"; });
  }
  state.img = await loadImage(`${API}/images/${iid}/display/`);
  // a link from the next-step panel: which label to paint, where to look
  const q = new URLSearchParams(window.location.search);
  if (canEdit && q.get("label") && document.querySelector(`[data-label="${CSS.escape(q.get("label"))}"]`)) setLabel(q.get("label"));
  const focus = (q.get("focus") || "").split(",").map(Number);
  if (focus.length === 4 && focus.every(Number.isFinite) && focus[2] > focus[0] && focus[3] > focus[1]) {
    state.focus = focus;
    const r = wrap.getBoundingClientRect();
    const [x0, y0, x1, y1] = focus;
    const pad = Math.max(24, 0.6 * Math.max(x1 - x0, y1 - y0));
    state.scale = Math.min(8, (r.width - 20) / (x1 - x0 + 2 * pad), (r.height - 20) / (y1 - y0 + 2 * pad));
    state.ox = r.width / 2 - ((x0 + x1) / 2) * state.scale;
    state.oy = r.height / 2 - ((y0 + y1) / 2) * state.scale;
    canvas.dataset.focus = focus.join(",");
  }
  if (window.location.hash === "#ground-truth") {
    const gt = document.querySelector("[data-testid=ground-truth]");
    gt.classList.add("highlight"); gt.scrollIntoView({ block: "nearest" });
  }
  draw();
  const list = await apiAll(`/images/${iid}/prompts/`);
  state.prompts = list.map(fromServer);
  updateCount();
  draw();
  const preds = await loadPrediction();
  await loadFilmstrip(preds);
  await gtLoad();
  canvas.dataset.ready = "1";
}
// read-only view state for tests and debugging (image px -> screen px)
window.__editor = {
  view: () => ({ scale: state.scale, ox: state.ox, oy: state.oy, width: W, height: H }),
  prompts: () => state.prompts.length,
  // the drawn image's own size and its grey level at image pixel (x, y)
  image: (x, y) => {
    const c = document.createElement("canvas"); c.width = state.img.naturalWidth; c.height = state.img.naturalHeight;
    const g = c.getContext("2d"); g.drawImage(state.img, 0, 0);
    return { width: c.width, height: c.height, value: g.getImageData(x, y, 1, 1).data[0] };
  },
};
start().catch((ex) => setStatus(ex.message, "error"));
