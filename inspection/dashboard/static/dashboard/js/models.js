// Models: versions with metrics and training inputs; deploy; compare two by per-image verdict.
import { API, api, apiAll, h, pageData, pct, fmt, when, verdictBadge, errorText, toast } from "./api.js";
import { loadImages, loadProject, normPrediction } from "./shapes.js";

const PD = pageData();
const pid = PD.project_id;
let models = [];
let images = [];
let project = null;

const num = (m) => m.number ?? m.version ?? m.id;
const idOf = (x) => (x && typeof x === "object" ? x.id : x);

function usedImages(m) { return (m.images || m.image_ids || []).map((x) => (typeof x === "object" ? x.id : x)); }
function usedPrompts(m) { return m.prompt_ids || m.prompts || []; }

function render() {
  const deployed = idOf(project.deployed_model);
  document.getElementById("deployed-note").textContent = deployed ? "" : "No version deployed: inspections need one.";
  const body = document.getElementById("model-rows");
  body.replaceChildren(...(models.length ? models.map((m) => {
    const met = m.metrics || {};
    const isDep = String(m.id) === String(deployed) || m.deployed === true;
    return h("tr", { "data-model-id": m.id, "data-testid": "model-row", class: isDep ? "model-card deployed" : "" },
      h("td", {}, h("b", {}, `v${num(m)}`), " ", isDep ? h("span", { class: "badge ok", "data-testid": "deployed-badge" }, "DEPLOYED") : ""),
      h("td", {}, when(m.created_at)),
      h("td", {}, m.backend || ""),
      h("td", { class: "num" }, fmt(met.iou, 3)),
      h("td", { class: "num" }, pct(met.escape_rate)),
      h("td", { class: "num" }, pct(met.overkill_rate)),
      h("td", { class: "num" }, fmt(met.loo_iou, 3)),
      h("td", { class: "num" }, met.n_ground_truth ?? "—"),
      h("td", {}, h("a", { href: "#", onclick: (e) => { e.preventDefault(); showUsed(m); } }, `${usedImages(m).length} images · ${usedPrompts(m).length} prompts`)),
      h("td", {}, PD.can_edit && !isDep ? h("button", { class: "btn small", "data-testid": "deploy", onclick: () => deploy(m) }, "Deploy") : "",
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
  document.getElementById("used-title").textContent = `v${num(m)} was trained on ${usedImages(m).length} images and ${usedPrompts(m).length} prompts`;
  document.getElementById("used-thumbs").replaceChildren(...usedImages(m).map((id) => {
    const im = byId.get(String(id));
    return h("div", { class: "thumb" }, im
      ? h("a", { class: "img", href: `/projects/${pid}/images/${id}/`, style: "height:90px" }, h("img", { src: im.thumbUrl, alt: im.name, style: "max-height:90px" }))
      : h("div", { class: "img empty small", style: "height:90px" }, "deleted image"));
  }));
  card.scrollIntoView({ behavior: "smooth" });
}

async function deploy(m) {
  try {
    await api(`/models/${m.id}/deploy/`, { method: "POST", body: {} });
    toast(`v${num(m)} deployed`);
    await load();
  } catch (ex) { toast(errorText(ex.body) || ex.message, { error: true }); }
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
}
load().catch((ex) => document.getElementById("model-rows").replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "error" }, ex.message))));
