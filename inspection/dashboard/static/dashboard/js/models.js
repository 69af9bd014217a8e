// Models: versions with metrics and training inputs; deploy; shadow mode; compare two by per-image verdict.
import { API, api, apiAll, h, pageData, pct, pctInterval, fmt, when, verdictBadge, errorText, toast } from "./api.js";
import { loadImages, loadProject, normPrediction } from "./shapes.js";
import { deployConfirm, plural } from "./lifecycle.js";

const PD = pageData();
const pid = PD.project_id;
let models = [];
let images = [];
let project = null;

const num = (m) => m.number ?? m.version ?? m.id;
const idOf = (x) => (x && typeof x === "object" ? x.id : x);

// a rate's 95 % interval under it, small: ten labelled images pin a rate down only loosely
function rateInterval(iv, kind) {
  const text = pctInterval(iv);
  return text ? h("div", { class: "ci", "data-testid": `model-${kind}-interval`, title: "95 % interval over the images with ground truth" }, text) : "";
}

function usedImages(m) { return (m.images || m.image_ids || []).map((x) => (typeof x === "object" ? x.id : x)); }
function usedPrompts(m) { return m.prompt_ids || m.prompts || []; }

// the working resolution the version learnt and predicts at (0 or none: every image whole)
function workSize(m) {
  const n = (m.config || {}).work_max_side;
  return n ? h("span", { class: "small muted", "data-testid": "model-work-size", title: "images longer than this on their longer side are learnt from and judged at this size (Settings → Features)" }, ` · ≤${n} px`) : "";
}

function render() {
  const deployed = idOf(project.deployed_model);
  document.getElementById("deployed-note").textContent = deployed ? "" : "No version deployed: inspections need one.";
  const body = document.getElementById("model-rows");
  body.replaceChildren(...(models.length ? models.map((m) => {
    const met = m.metrics || {};
    const isDep = String(m.id) === String(deployed) || m.deployed === true;
    return h("tr", { "data-model-id": m.id, "data-testid": "model-row", class: isDep ? "model-card deployed" : "" },
      h("td", {}, h("b", {}, `v${num(m)}`), " ", isDep ? h("span", { class: "badge ok", "data-testid": "deployed-badge" }, "DEPLOYED") : "",
        project.candidate_model && String(project.candidate_model.id) === String(m.id) ? h("span", { class: "badge role", "data-testid": "candidate-badge", title: "the newest version after the deployed one: the Images page can show its predictions" }, "CANDIDATE") : "",
        m.dismissed_at ? h("span", { class: "badge", title: "set aside: an earlier version was kept" }, "SET ASIDE") : "",
        m.shadow ? h("span", { class: "badge warn", "data-testid": "shadow-badge", title: "judges every inspection beside the deployed model; decides nothing" }, "SHADOW") : ""),
      h("td", {}, when(m.created_at)),
      h("td", {}, m.backend || "", workSize(m)),
      h("td", { class: "num" }, fmt(met.iou, 3)),
      h("td", { class: "num" }, pct(met.escape_rate), rateInterval(met.escape_interval, "escape")),
      h("td", { class: "num" }, pct(met.overkill_rate), rateInterval(met.overkill_interval, "overkill")),
      h("td", { class: "num" }, fmt(met.loo_iou, 3)),
      h("td", { class: "num" }, met.n_ground_truth ?? "—"),
      h("td", {}, h("a", { href: "#", onclick: (e) => { e.preventDefault(); showUsed(m); } }, `${plural(usedImages(m).length, "image")} · ${plural(usedPrompts(m).length, "prompt")}`)),
      h("td", {}, PD.can_edit && !isDep ? h("button", { class: "btn small", "data-testid": "deploy", onclick: () => deploy(m) }, "Deploy") : "",
        PD.can_edit && !isDep ? h("button", { class: "btn small", "data-testid": m.shadow ? "shadow-stop" : "shadow-start", onclick: () => shadow(m), title: "Run this version on the line's images beside the deployed one, without deciding anything" }, m.shadow ? "Stop shadow" : "Shadow") : "",
        PD.can_inspect ? h("a", { class: "btn small", href: `${API}/models/${m.id}/bundle/`, download: "", "data-testid": "bundle", title: "This model with the active rules as one file: python -m prompting inspect --bundle FILE --images DIR decides offline exactly as the server" }, "Bundle") : ""));
  }) : [h("tr", {}, h("td", { colspan: 10, class: "empty" }, "No models yet: paint prompts and press Run."))]));
  for (const id of ["cmp-a", "cmp-b"]) {
    const s = document.getElementById(id);
    const keep = s.value;
    s.replaceChildren(...models.map((m) => h("option", { value: m.id }, `v${num(m)}`)));
    if (keep) s.value = keep;
  }
  if (models.length > 1 && !document.getElementById("cmp-b").dataset.init) {
    document.getElementById("cmp-a").value = models[1].id;
    document.getElementById("cmp-b").value = models[0].id;
    document.getElementById("cmp-b").dataset.init = "1";
  }
}

function showUsed(m) {
  const card = document.getElementById("used-card");
  card.hidden = false;
  const byId = new Map(images.map((i) => [String(i.id), i]));
  document.getElementById("used-title").textContent = `v${num(m)} was trained on ${plural(usedImages(m).length, "image")} and ${plural(usedPrompts(m).length, "prompt")}`;
  document.getElementById("used-thumbs").replaceChildren(...usedImages(m).map((id) => {
    const im = byId.get(String(id));
    return h("div", { class: "thumb" }, im
      ? h("a", { class: "img", href: `/projects/${pid}/images/${id}/`, style: "height:90px" }, h("img", { src: im.thumbUrl, alt: im.name, style: "max-height:90px" }))
      : h("div", { class: "img empty small", style: "height:90px" }, "deleted image"));
  }));
  card.scrollIntoView({ behavior: "smooth" });
}

// shadow mode: a candidate judges the line's images beside the deployed model
async function shadow(m) {
  try {
    await api(`/models/${m.id}/shadow/`, { method: m.shadow ? "DELETE" : "POST", body: m.shadow ? undefined : {} });
    toast(m.shadow ? `v${num(m)} no longer in the shadow` : `v${num(m)} now judges every inspection in the shadow`);
    await load();
  } catch (ex) { toast(errorText(ex.body) || ex.message, { error: true }); }
}

async function renderShadow() {
  const card = document.getElementById("shadow-card");
  const m = models.find((x) => x.shadow) || models.find((x) => String(x.id) === card.dataset.last);
  if (!m) { card.hidden = true; return; }
  card.dataset.last = m.id;
  const c = await api(`/models/${m.id}/shadow/`);
  card.hidden = false;
  document.getElementById("shadow-title").textContent = `v${c.model_number} in the shadow of the deployed model${c.active ? "" : " (stopped)"}`;
  const r = c.reviewed;
  const rows = [
    ["inspections judged by both", c.n_inspections, "shadow-n"],
    ["same verdict", c.agreement_rate == null ? "—" : `${c.agree} (${pct(c.agreement_rate)})`, "shadow-agree"],
    ["deployed NG, shadow OK", c.deployed_ng_shadow_ok, "shadow-ng-ok"],
    ["deployed OK, shadow NG", c.deployed_ok_shadow_ng, "shadow-ok-ng"],
    ["reviewed by a person", r.n, "shadow-reviewed"],
    ["right on reviewed parts: deployed / shadow", r.n ? `${r.deployed_right} / ${r.shadow_right}` : "—", "shadow-right"],
    ["escapes: deployed / shadow", r.n ? `${r.deployed_escapes} / ${r.shadow_escapes}` : "—", "shadow-escapes"],
    ["overkills: deployed / shadow", r.n ? `${r.deployed_overkills} / ${r.shadow_overkills}` : "—", "shadow-overkills"],
    ["shadow engine time (median)", c.engine_ms_median == null ? "—" : `${fmt(c.engine_ms_median, 0)} ms`, "shadow-ms"],
  ];
  if (c.n_errors) rows.push(["inspections the shadow model failed on", c.n_errors, "shadow-errors"]);
  document.getElementById("shadow-rows").replaceChildren(...rows.map(([k, v, id]) => h("tr", {}, h("td", {}, k), h("td", { class: "num", "data-testid": id }, String(v)))));
  document.getElementById("shadow-log").href = `/projects/${pid}/inspections/?shadow_disagrees=true`;
}

// Deploy asks first, with this version against the deployed one
async function deploy(m) {
  const done = await deployConfirm({ projectId: pid, model: { id: m.id, number: num(m) }, deployedNumber: project.deployed_model_number });
  if (done) await load();
}

async function verdictsOf(modelId) {
  const list = await apiAll(`/projects/${pid}/predictions/?model_version=${modelId}&page_size=500`);
  const out = new Map();
  for (const p of list.map((x) => normPrediction(x))) {
    if (p.modelVersion != null && String(idOf(p.modelVersion)) !== String(modelId)) continue;
    if (!out.has(String(p.imageId))) out.set(String(p.imageId), p);
  }
  return out;
}

document.getElementById("cmp-go").addEventListener("click", async () => {
  const a = document.getElementById("cmp-a").value, b = document.getElementById("cmp-b").value;
  if (!a || !b) return;
  const [va, vb] = await Promise.all([verdictsOf(a), verdictsOf(b)]);
  const ma = models.find((m) => String(m.id) === a), mb = models.find((m) => String(m.id) === b);
  let diff = 0;
  const rows = images.map((im) => {
    const pa = va.get(String(im.id)), pb = vb.get(String(im.id));
    const d = pa && pb && pa.verdict !== pb.verdict;
    if (d) diff++;
    return h("tr", { "data-testid": "compare-row" },
      h("td", {}, h("a", { href: `/projects/${pid}/images/${im.id}/` }, h("img", { src: im.thumbUrl, style: "height:40px;vertical-align:middle;margin-right:8px", alt: "" }), im.name)),
      h("td", {}, im.gtVerdict ? `truth ${im.gtVerdict}` : ""),
      h("td", { class: d ? "diff" : "" }, pa ? verdictBadge(pa.verdict, pa.severity) : "—"),
      h("td", { class: d ? "diff" : "" }, pb ? verdictBadge(pb.verdict, pb.severity) : "—"));
  });
  document.getElementById("cmp-rows").replaceChildren(
    h("tr", {}, h("th", {}, "Image"), h("th", {}, "Ground truth"), h("th", {}, `v${num(ma)}`), h("th", {}, `v${num(mb)}`)), ...rows);
  document.getElementById("cmp-summary").textContent = `${diff} image${diff === 1 ? "" : "s"} change verdict between v${num(ma)} and v${num(mb)}.`;
});

async function load() {
  [project, models, images] = await Promise.all([loadProject(pid), apiAll(`/projects/${pid}/models/`), loadImages(pid)]);
  render();
  await renderShadow();
}
load().catch((ex) => document.getElementById("model-rows").replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "error" }, ex.message))));
