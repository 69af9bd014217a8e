// Rules editor: a form over the rule-set JSON, a live debounced backtest, the
// tuner ("Suggest") and Save (a new rule-set version).
import { api, h, pageData, pct, pctInterval, errorText, debounce, toast, pollJob, ApiError } from "./api.js";
import { classesOf, loadImages } from "./shapes.js";

const PD = pageData();
const pid = PD.project_id;
const canEdit = PD.can_edit;
const classes = classesOf({ classes: PD.classes });
const form = document.getElementById("rules-form");
const msg = document.getElementById("rules-msg");

// The vocabulary (rule types and their fields, measures, morphology operations,
// severities) comes from the engine through GET /rules/vocabulary/, so a new rule
// type shows up here without a change to this file.
let OPS = [];          // morphology operations
let OP_PARAM = {};     // operation -> its parameter
let MEASURES = [];     // blob filter measures
let SEVERITIES = [];
let RULE_TYPES = [];   // [{type, label, params: [{group, fields: [{name, unit, unit_label, min, max, step, default, integer, mm_power, suffix}]}]}]
let ANY_CLASS = "*";
async function vocabularyLoad() {
  const v = await api("/rules/vocabulary/");
  OPS = Object.keys(v.morphology_ops);
  OP_PARAM = v.morphology_ops;
  MEASURES = v.measures;
  SEVERITIES = v.severities;
  RULE_TYPES = v.rule_types;
  ANY_CLASS = v.any_class;
}
const ruleTypeOf = (name) => RULE_TYPES.find((t) => t.type === name);
const ruleFieldNames = () => RULE_TYPES.flatMap((t) => t.params.flatMap((p) => p.fields.map((f) => f.name)));
// a new rule of type t: the first field of each of its groups, at its default
function ruleDefaults(t) { const out = {}; for (const p of t.params) out[p.fields[0].name] = p.fields[0].default; return out; }
// a value moved from one field to its alternative (px <-> mm²) through the calibration
function unitConvert(value, from, to) {
  if (!PD.px_per_mm || value == null) return to.default;
  const v = value * PD.px_per_mm ** from.mm_power / PD.px_per_mm ** to.mm_power;
  return to.integer ? Math.round(v) : +v.toFixed(4);
}

let active = null;     // rule set as stored (the active version)
let rules = null;      // working copy (the form's model)
let version = null;
let images = [];
let thumbs = new Map();
let btSeq = 0;

const clone = (o) => JSON.parse(JSON.stringify(o));

// ------------------------------------------------------------------ form
function num(value, { step = "any", min, max, testid, onInput, width } = {}) {
  const el = h("input", { type: "number", step, min, max, value: value ?? "", "data-testid": testid, style: width ? `width:${width}px` : null });
  el.addEventListener("input", () => { const v = el.value === "" ? null : Number(el.value); onInput(v); changed(); });
  return el;
}
function sel(options, value, { testid, onChange } = {}) {
  const el = h("select", { "data-testid": testid }, options.map((o) => {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    return h("option", { value: v, selected: String(v) === String(value) }, label);
  }));
  el.addEventListener("change", () => { onChange(el.value); changed(); });
  return el;
}
// "×" (remove) sits at the row's right end and never wraps onto a line of its own
function btn(text, onclick, attrs = {}) { return h("button", { class: "btn small" + (text === "×" ? " remove" : ""), type: "button", onclick, ...attrs }, text); }

function classBlock(key, entry, title) {
  entry.morphology = entry.morphology || [];
  entry.filters = entry.filters || [];
  const fs = h("fieldset", { "data-testid": `class-${key}` }, h("legend", {}, title));
  const thr = h("input", { type: "range", min: 0, max: 1, step: 0.01, value: entry.threshold ?? 0.5, style: "flex:1" });
  const thrN = num(entry.threshold ?? 0.5, { step: 0.01, min: 0, max: 1, testid: `threshold-${key}`, onInput: (v) => { entry.threshold = v; thr.value = v; } });
  thr.addEventListener("input", () => { entry.threshold = Number(thr.value); thrN.value = thr.value; changed(); });
  fs.append(h("div", { class: "range-row" }, h("label", { style: "width:110px" }, "Probability ≥"), thr, thrN));
  const steps = h("div", {});
  entry.morphology.forEach((s, i) => {
    const param = OP_PARAM[s.op] || "radius";
    steps.append(h("div", { class: "step-row", "data-testid": `step-${key}-${i}` },
      h("span", { class: "muted small", style: "width:16px" }, `${i + 1}.`),
      sel(OPS, s.op, { onChange: (v) => { const old = OP_PARAM[s.op]; const val = s[old]; delete s[old]; s.op = v; s[OP_PARAM[v]] = val ?? (OP_PARAM[v] === "radius" ? 1 : 20); renderForm(); } }),
      h("span", { class: "small muted" }, param.replace("_", " ")),
      num(s[param], { step: 1, min: 0, testid: `step-${key}-${i}-${param}`, onInput: (v) => { s[param] = v; } }),
      btn("↑", () => { if (i) { entry.morphology.splice(i - 1, 0, entry.morphology.splice(i, 1)[0]); renderForm(); changed(); } }, { title: "move up" }),
      btn("×", () => { entry.morphology.splice(i, 1); renderForm(); changed(); }, { title: "remove step" })));
  });
  fs.append(h("div", { class: "small muted", style: "margin-top:8px" }, "Morphology (in order)"), steps,
    btn("+ step", () => { entry.morphology.push({ op: "opening", radius: 1 }); renderForm(); changed(); }));
  const filters = h("div", {});
  entry.filters.forEach((f, i) => {
    filters.append(h("div", { class: "filter-row" },
      sel(MEASURES, f.measure, { onChange: (v) => { f.measure = v; } }),
      h("span", { class: "small muted" }, "min"), num(f.min, { onInput: (v) => { if (v == null) delete f.min; else f.min = v; } }),
      h("span", { class: "small muted" }, "max"), num(f.max, { onInput: (v) => { if (v == null) delete f.max; else f.max = v; } }),
      btn("×", () => { entry.filters.splice(i, 1); renderForm(); changed(); })));
  });
  fs.append(h("div", { class: "small muted", style: "margin-top:8px" }, "Blob filters (blobs outside are ignored)"), filters,
    btn("+ filter", () => { entry.filters.push({ measure: "area_px", min: 10 }); renderForm(); changed(); }));
  return fs;
}

function ruleParams(r, i, t) {
  const out = [];
  for (const group of t.params) {
    const fields = group.fields;
    const cur = fields.find((f) => r[f.name] != null) || fields[0];
    const key = group.group.replaceAll("_", "-");
    out.push(num(r[cur.name], { testid: `rule-${i}-${key}`, min: cur.min, max: cur.max, step: cur.step, onInput: (v) => { r[cur.name] = v; } }));
    if (fields.length > 1) {
      out.push(sel(fields.map((f) => [f.unit, f.unit_label]), cur.unit, { testid: t.params.length > 1 ? `rule-${i}-${key}-unit` : `rule-${i}-unit`, onChange: (v) => {
        const to = fields.find((f) => f.unit === v);
        const value = r[cur.name];
        delete r[cur.name];
        r[to.name] = unitConvert(value, cur, to);
        renderForm();
      } }));
    }
    if (cur.suffix) out.push(h("span", { class: "small muted" }, cur.suffix));
  }
  return out;
}

function ruleRow(r, i) {
  const row = h("div", { class: "rule-row", "data-testid": `rule-${i}` });
  const idIn = h("input", { type: "text", value: r.id || "", placeholder: "rule id", title: "rule id" });
  idIn.addEventListener("input", () => { r.id = idIn.value; changed(); });
  row.append(idIn,
    sel(RULE_TYPES.map((t) => [t.type, t.label]), r.type, { testid: `rule-${i}-type`, onChange: (v) => {
      for (const name of ruleFieldNames()) delete r[name];
      r.type = v;
      Object.assign(r, ruleDefaults(ruleTypeOf(v)));
      renderForm();
    } }),
    sel([[ANY_CLASS, "any class"], ...classes.map((c) => [c.name, c.name])], r.class || ANY_CLASS, { onChange: (v) => { r.class = v; } }));
  const t = ruleTypeOf(r.type);
  if (t) row.append(...ruleParams(r, i, t));
  row.append(h("span", { class: "small muted" }, "→"),
    sel(SEVERITIES, r.severity || "major", { testid: `rule-${i}-severity`, onChange: (v) => { r.severity = v; } }),
    btn("×", () => { rules.rules.splice(i, 1); renderForm(); changed(); }, { title: "remove rule" }));
  return row;
}

function renderForm() {
  rules.classes = rules.classes || {};
  rules.default = rules.default || { threshold: 0.5, morphology: [], filters: [] };
  rules.rules = rules.rules || [];
  rules.regions = rules.regions || { include: [], ignore: [] };
  const general = h("fieldset", {}, h("legend", {}, "General"),
    h("div", { class: "inline-fields" },
      h("div", { class: "field" }, h("label", {}, "Connectivity"),
        sel([[4, "4 (edges)"], [8, "8 (edges + corners)"]], rules.connectivity ?? 8, { testid: "connectivity", onChange: (v) => { rules.connectivity = Number(v); } })),
      h("div", { class: "field" }, h("label", {}, "Calibration"),
        h("span", { class: "small muted", style: "line-height:32px" }, PD.px_per_mm ? `${PD.px_per_mm} px per mm` : "none (mm² rules need px_per_mm)"))));
  const ruleList = h("div", {}, rules.rules.map(ruleRow));
  const rulesFs = h("fieldset", {}, h("legend", {}, "NG rules (any rule that fires makes the image NG)"), ruleList,
    btn("+ rule", () => { rules.rules.push({ id: `rule${rules.rules.length + 1}`, type: RULE_TYPES[0].type, class: ANY_CLASS, ...ruleDefaults(RULE_TYPES[0]), severity: "major" }); renderForm(); changed(); }, { "data-testid": "add-rule" }));
  const blocks = [classBlock("default", rules.default, "Segmentation: default for every class")];
  for (const c of classes) {
    if (rules.classes[c.name]) {
      const b = classBlock(c.name, rules.classes[c.name], `Segmentation: ${c.name}`);
      b.querySelector("legend").append(" ", btn("use default", () => { delete rules.classes[c.name]; renderForm(); changed(); }));
      blocks.push(b);
    }
  }
  const overrides = classes.filter((c) => !rules.classes[c.name]);
  const addOverride = overrides.length ? h("div", { style: "margin:-4px 0 12px" }, ...overrides.map((c) =>
    btn(`+ settings for ${c.name}`, () => { rules.classes[c.name] = clone(rules.default); renderForm(); changed(); }))) : null;
  form.replaceChildren(general, rulesFs, ...blocks, addOverride || "", regionsFieldset());
  drawRegions();
}

// ------------------------------------------------------------------ regions
let regionMode = "include";
let drafting = [];
let regionImg = null;
let regionImage = null;
function regionsFieldset() {
  const canvas = h("canvas", { class: "region-canvas", id: "region-canvas", "data-testid": "region-canvas", width: 10, height: 10 });
  canvas.addEventListener("click", (e) => {
    if (!canEdit || !regionImage || e.detail > 1) return;  // the 2nd click of a double-click closes instead
    const r = canvas.getBoundingClientRect();
    const sx = regionImage.width / r.width, sy = regionImage.height / r.height;
    drafting.push([Math.round((e.clientX - r.left) * sx), Math.round((e.clientY - r.top) * sy)]);
    drawRegions();
  });
  canvas.addEventListener("dblclick", (e) => { e.preventDefault(); closePolygon(); });
  const list = h("div", { class: "small" });
  for (const kind of ["include", "ignore"]) {
    (rules.regions[kind] || []).forEach((poly, i) => list.append(h("div", { class: "filter-row" },
      h("span", { class: "badge " + (kind === "include" ? "soft-ok" : "soft-ng") }, kind), `${poly.length} points`,
      btn("×", () => { rules.regions[kind].splice(i, 1); renderForm(); changed(); }))));
  }
  const pick = h("select", { "data-testid": "region-image" }, images.map((im) => h("option", { value: im.id, selected: regionImage && im.id === regionImage.id }, im.name)));
  pick.addEventListener("change", () => setRegionImage(images.find((i) => String(i.id) === pick.value)));
  return h("fieldset", {}, h("legend", {}, "Inspection regions"),
    h("div", { class: "inline-fields", style: "margin-bottom:8px" },
      sel([["include", "draw include region"], ["ignore", "draw ignore region"]], regionMode, { onChange: (v) => { regionMode = v; } }),
      btn("Close polygon", closePolygon), btn("Discard", () => { drafting = []; drawRegions(); }), images.length ? pick : ""),
    h("div", { class: "small muted", style: "margin-bottom:6px" }, "Click to add points, double-click to close. Blobs outside include regions or inside ignore regions don't count."),
    canvas, list);
}
function closePolygon() {
  if (drafting.length >= 3) {
    rules.regions[regionMode] = rules.regions[regionMode] || [];
    rules.regions[regionMode].push(drafting);
    drafting = [];
    renderForm(); changed();
  }
}
async function setRegionImage(im) {
  regionImage = im;
  if (!im) return;
  regionImg = await new Promise((res) => { const i = new Image(); i.onload = () => res(i); i.onerror = () => res(null); i.src = im.fileUrl; });
  drawRegions();
}
function drawRegions() {
  const canvas = document.getElementById("region-canvas");
  if (!canvas) return;
  const W = regionImage ? regionImage.width : 400, H = regionImage ? regionImage.height : 200;
  canvas.width = W; canvas.height = H;
  const room = canvas.parentElement ? canvas.parentElement.clientWidth - 4 : 600;
  const k = Math.min(room / W, 320 / H);
  canvas.style.width = `${Math.round(W * k)}px`;
  canvas.style.height = `${Math.round(H * k)}px`;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#15191f"; ctx.fillRect(0, 0, W, H);
  if (regionImg) ctx.drawImage(regionImg, 0, 0, W, H);
  const poly = (pts, colour, closed = true) => {
    if (!pts.length) return;
    ctx.beginPath(); pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); if (closed) ctx.closePath();
    ctx.lineWidth = Math.max(1, W / 300); ctx.strokeStyle = colour; ctx.stroke();
    if (closed) { ctx.globalAlpha = 0.2; ctx.fillStyle = colour; ctx.fill(); ctx.globalAlpha = 1; }
  };
  (rules.regions.include || []).forEach((p) => poly(p, "#3fd07a"));
  (rules.regions.ignore || []).forEach((p) => poly(p, "#ff5a5a"));
  poly(drafting, "#ffd23f", false);
  drafting.forEach(([x, y]) => { ctx.fillStyle = "#ffd23f"; ctx.fillRect(x - 2, y - 2, 4, 4); });
}

// ------------------------------------------------------------------ backtest
function metric(k, v, cls = "", testid, interval = "") {
  return h("div", { class: "metric " + cls, "data-testid": testid }, h("div", { class: "v" }, v), h("div", { class: "k" }, k),
    interval ? h("div", { class: "ci", "data-testid": `${testid}-interval`, title: "95 % interval: the rates this many labelled images are consistent with; label more parts to narrow it" }, `95 %: ${interval}`) : "");
}
function reportOf(res) { return res.report || res.backtest || res; }

// Backtest and tune answer 200 with the report on a small project, or 202 with
// a job on a large one: then follow the job (onProgress(job) on each poll) and
// return its result. isCurrent() false: a newer request replaced this one, so
// the job is cancelled and null returned.
async function rulesCall(path, body, { onProgress, isCurrent = () => true } = {}) {
  const res = await api(path, { method: "POST", body });
  if (!(res && res.job && res.job.id && !res.confusion && !res.rules)) return res;
  const jobId = res.job.id;
  let stale = false;
  const job = await pollJob(jobId, {
    interval: 300,
    onUpdate: (j) => {
      if (!stale && !isCurrent()) {
        stale = true;
        api(`/jobs/${jobId}/cancel/`, { method: "POST" }).catch(() => {});
      }
      if (!stale && onProgress) onProgress(j);
    },
  });
  if (stale || !isCurrent()) return null;
  if (job.state !== "succeeded") throw new ApiError(409, { detail: job.error || job.message || `job ${job.state}` });
  return job.result;
}
function showReport(rep) {
  const c = rep.confusion || {};
  const held = rep.held_out || null;
  document.getElementById("bt-metrics").replaceChildren(
    metric("escape rate", pct(rep.escape_rate), rep.escape_rate ? "ng" : "ok", "escape-rate", pctInterval(rep.escape_interval)),
    metric("overkill rate", pct(rep.overkill_rate), rep.overkill_rate ? "ng" : "ok", "overkill-rate", pctInterval(rep.overkill_interval)),
    metric("labelled images", rep.n_images ?? "—", "", "n-images"),
    metric("predicted NG", (c.tp ?? 0) + (c.fp ?? 0), "", "predicted-ng"),
    // images the model never trained on: the honest estimate for new parts
    metric("not trained on", held ? held.n_images : "—", "", "n-held-out"),
    metric("escape / overkill, not trained on", held && held.n_images ? `${pct(held.escape_rate)} / ${pct(held.overkill_rate)}` : "—", "", "held-out-rates",
      held && held.n_images ? `${pctInterval(held.escape_interval) || "—"} / ${pctInterval(held.overkill_interval) || "—"}` : ""));
  document.getElementById("bt-confusion").replaceChildren(
    h("tr", {}, h("th", {}, ""), h("th", {}, "predicted NG"), h("th", {}, "predicted OK")),
    h("tr", {}, h("th", {}, "truth NG"), h("td", { class: "good", "data-testid": "cm-tp" }, c.tp ?? 0), h("td", { class: "bad", "data-testid": "cm-fn", title: "escapes" }, c.fn ?? 0)),
    h("tr", {}, h("th", {}, "truth OK"), h("td", { class: "bad", "data-testid": "cm-fp", title: "overkill" }, c.fp ?? 0), h("td", { class: "good", "data-testid": "cm-tn" }, c.tn ?? 0)));
  const note = document.getElementById("bt-note");
  if (!rep.n_images) note.textContent = "No labelled images with predictions yet: upload with a ground-truth verdict or mask, then Run.";
  else if (rep.warning) note.replaceChildren(h("div", { class: "notice warn", "data-testid": "backtest-warning" }, rep.warning));
  else note.textContent = "";
  const changes = rep.changes || [];
  document.getElementById("bt-nchanges").textContent = `(${changes.length})`;
  document.getElementById("bt-changes").replaceChildren(...(changes.length ? changes.map((ch) => {
    const im = thumbs.get(String(ch.image_id));
    return h("a", { class: "change", href: `/projects/${pid}/decisions/${ch.image_id}/`, "data-testid": "change", title: im ? im.name : ch.image_id },
      h("img", { src: im ? im.thumbUrl : `/api/v1/images/${ch.image_id}/thumbnail/`, alt: "" }),
      h("div", { class: "meta" }, h("span", { class: "badge " + (ch.before === "NG" ? "ng" : "ok") }, ch.before), "→",
        h("span", { class: "badge " + (ch.after === "NG" ? "ng" : "ok") }, ch.after),
        ch.truth ? h("span", { class: "muted" }, `truth ${ch.truth}`) : null));
  }) : [h("div", { class: "muted small", style: "grid-column: 1 / -1" }, "No verdict changes against the active rules.")]));
}
async function backtest() {
  const seq = ++btSeq;
  const st = document.getElementById("bt-state");
  st.textContent = "running…";
  st.dataset.state = "running";
  try {
    const res = await rulesCall(`/projects/${pid}/rules/backtest/`, { rules: rules }, {
      isCurrent: () => seq === btSeq,
      onProgress: (job) => { st.textContent = `running as a job… ${job.progress || 0} %`; st.dataset.state = "running"; },
    });
    if (seq !== btSeq || res === null) return;
    showReport(reportOf(res));
    st.textContent = `updated ${new Date().toLocaleTimeString()}`;
    st.dataset.state = "done";
    st.dataset.seq = String(seq);
  } catch (ex) {
    if (seq !== btSeq) return;
    st.textContent = "not run";
    st.dataset.state = "error";
    st.dataset.seq = String(seq);
    // 400: the form's rule set is invalid (field errors); 409: nothing to backtest yet
    document.getElementById("bt-note").replaceChildren(h("div", { class: "notice " + (ex.status === 409 ? "warn" : "error"), "data-testid": "backtest-error" }, errorText(ex.body) || ex.message));
    document.getElementById("bt-nchanges").textContent = "";
    document.getElementById("bt-changes").replaceChildren(h("div", { class: "muted small", style: "grid-column: 1 / -1" }, "Listed once the backtest can run."));
  }
}
const backtestSoon = debounce(backtest, 350);
function changed() { dirty(true); backtestSoon(); drawRegions(); }
function dirty(on) { document.getElementById("rules-version").textContent = version != null ? `v${version}${on ? " · edited" : ""}` : ""; }

// ------------------------------------------------------------------ load / save / suggest
function rulesOf(res) { return res.rules || res.data || res.ruleset || res; }
async function load() {
  const res = await api(`/projects/${pid}/rules/`);
  version = res.version ?? null;
  active = rulesOf(res);
  rules = clone(active);
  renderForm();
  dirty(false);
}
// The suggestion lets no defect through that it can catch; where the labelled
// parts allow fewer good parts rejected for more escapes, each such balance is
// offered with a button that loads its rules into the form.
function alternativesView(res) {
  const alts = res.alternatives || [];
  if (!alts.length) return "";
  const count = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  return h("div", { class: "notice", "data-testid": "tune-alternatives" },
    h("div", {}, "Other balances on the labelled parts (more escapes, fewer good parts rejected):"),
    h("ul", {}, ...alts.map((a, i) => h("li", { "data-testid": "tune-alternative" },
      `${count(a.escapes, "escape")}, ${count(a.overkills, "overkill")} `,
      h("span", { class: "muted" }, `(escape ${pct(a.escape_rate)}, 95 %: ${pctInterval(a.escape_interval)}; overkill ${pct(a.overkill_rate)}, 95 %: ${pctInterval(a.overkill_interval)}) · threshold ${a.threshold}, minimum area ${a.min_area_px} px${a.anomaly_min_score != null ? `, anomaly score ≥ ${a.anomaly_min_score}` : ""} `),
      a.floods ? h("b", { class: "ng-text", "data-testid": "alternative-floods", title: "Its minimum area is a quarter of an image or more: at this threshold the masks grow into image-sized blobs, and the rule tells parts apart by how far they flood, not by their defects" }, "masks flood ") : "",
      h("button", { class: "btn small", type: "button", "data-testid": `use-alternative-${i}`,
        onclick: () => { rules = clone(a.rules); renderForm(); dirty(true); backtest(); } }, "Use")))));
}

if (canEdit) {
  document.getElementById("save").addEventListener("click", async () => {
    try {
      const res = await api(`/projects/${pid}/rules/`, { method: "PUT", body: { rules } });
      version = res.version ?? (version || 0) + 1;
      active = rulesOf(res);
      rules = clone(active);
      renderForm();
      dirty(false);
      msg.replaceChildren(h("div", { class: "notice ok", "data-testid": "rules-saved" }, `Saved as version ${version}. New predictions and inspections use it.`));
      backtest();
    } catch (ex) {
      msg.replaceChildren(h("div", { class: "notice error", "data-testid": "rules-errors" }, errorText(ex.body) || ex.message));
    }
  });
  document.getElementById("reset").addEventListener("click", () => { rules = clone(active); renderForm(); dirty(false); backtest(); });
  document.getElementById("suggest").addEventListener("click", async (e) => {
    const b = e.currentTarget;
    b.disabled = true;
    try {
      const res = await rulesCall(`/projects/${pid}/rules/tune/`, { rules }, {
        onProgress: (job) => msg.replaceChildren(h("div", { class: "notice", "data-testid": "tune-progress" }, `Suggesting… ${job.progress || 0} % (${job.message})`)),
      });
      const suggested = res.suggested || res.rules || res.ruleset;
      if (suggested) { rules = clone(suggested.rules && !suggested.connectivity ? suggested.rules : suggested); renderForm(); dirty(true); }
      const notes = [];
      if (res.threshold != null) notes.push(`threshold ${res.threshold}`);
      if (res.min_area_px != null) notes.push(`minimum area ${res.min_area_px} px`);
      msg.replaceChildren(h("div", { class: "notice" + (res.warning ? " warn" : ""), "data-testid": "tune-result" },
        res.warning ? `Suggestion: ${res.warning}` : `Suggested ${notes.join(", ")}. Review, then Save.`),
        alternativesView(res));
      backtest();
    } catch (ex) {
      msg.replaceChildren(h("div", { class: "notice error" }, errorText(ex.body) || ex.message));
    } finally { b.disabled = false; }
  });
}

(async () => {
  await vocabularyLoad();
  images = await loadImages(pid).catch(() => []);
  thumbs = new Map(images.map((i) => [String(i.id), i]));
  await load();
  if (images.length) setRegionImage(images[0]);
  backtest();
})().catch((ex) => { msg.replaceChildren(h("div", { class: "notice error" }, ex.message)); });
