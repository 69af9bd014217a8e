import { API, api, uploadXHR, h, pageData, typing, verdictBadge, errorText, toast } from "./api.js";
import { loadImages, loadPredictions, loadProject, coldStart, reviewOrder, normPrediction } from "./shapes.js";
import { setupRun } from "./run.js";

const PD = pageData();
const pid = PD.project_id;
let project = null;
let images = [];
let predictions = new Map();
let stamp = Date.now();

const thumbs = document.getElementById("thumbs");
const filters = {
  verdict: document.getElementById("f-verdict"),
  prompts: document.getElementById("f-prompts"),
  gt: document.getElementById("f-gt"),
  disagree: document.getElementById("f-disagree"),
};
const sortBy = document.getElementById("sort-by");

function predOf(im) { return predictions.get(String(im.id)) || im.prediction; }

function matches(im) {
  const p = predOf(im);
  const v = filters.verdict.value;
  if (v === "none" && p) return false;
  if ((v === "OK" || v === "NG") && (!p || p.verdict !== v)) return false;
  if (filters.prompts.checked && !im.promptCount) return false;
  if (filters.gt.checked && !im.gtVerdict && !im.hasMask) return false;
  if (filters.disagree.checked && !(p && im.gtVerdict && p.verdict !== im.gtVerdict)) return false;
  return true;
}

function thumbCard(im) {
  const p = predOf(im);
  const src = p ? (p.overlayUrl || `${im.overlayUrl}?v=${p.id ?? stamp}`) : im.thumbUrl;
  const disagree = p && im.gtVerdict && p.verdict !== im.gtVerdict;
  return h("div", { class: "thumb" + (disagree ? " disagree" : ""), "data-image-id": im.id, "data-testid": "thumb",
                    "data-predicted": p ? p.verdict : "" },
    h("a", { class: "img", href: `/projects/${pid}/images/${im.id}/`, title: im.name },
      h("img", { src, alt: im.name, loading: "lazy", "data-testid": "thumb-img" })),
    h("div", { class: "badges" }, p ? verdictBadge(p.verdict, p.severity) : null),
    p && p.uncertainty != null ? h("span", { class: "badge unsure unsure-corner", "data-testid": "uncertainty",
      title: "share of the inspected area the model is unsure about: paint corrections on the most uncertain images first" },
      `unsure ${(100 * p.uncertainty).toFixed(p.uncertainty < 0.1 ? 1 : 0)} %`) : null,
    h("div", { class: "meta" },
      im.gtVerdict ? h("span", { class: "badge " + (im.gtVerdict === "NG" ? "soft-ng" : "soft-ok"), title: "ground truth" }, "GT " + im.gtVerdict) : null,
      im.hasMask ? h("span", { class: "badge", title: "ground-truth mask" }, "mask") : null,
      im.promptCount ? h("span", { title: "prompts" }, `✎ ${im.promptCount}`) : null,
      h("span", { class: "spacer" }),
      p ? h("a", { href: `/projects/${pid}/decisions/${im.id}/`, "data-testid": "decision-link", title: "why this verdict" }, "why?") : null));
}

// "most uncertain first": where a correction stroke teaches the model most
function sorted(list) {
  return sortBy.value === "uncertainty" ? reviewOrder(list, (im) => predOf(im)?.uncertainty) : list;
}

function render() {
  const shown = sorted(images.filter(matches));
  document.getElementById("image-count").textContent = `${shown.length} of ${images.length}`;
  thumbs.replaceChildren(...(shown.length ? shown.map(thumbCard)
    : [h("div", { class: "empty" }, images.length ? "No image matches the filters." : "No images yet: drop some above.")]));
  const cs = coldStart(project, images.length);
  const el = document.getElementById("coldstart");
  el.className = "coldstart " + (cs.remaining ? "short" : "ready");
  el.textContent = cs.remaining
    ? `${cs.n} of ${cs.min} images: add ${cs.remaining} more to train`
    : `${cs.n} images: ready to train (minimum ${cs.min})`;
  const prompted = images.filter((i) => i.promptCount).length;
  document.getElementById("prompt-summary").textContent = `${prompted} image${prompted === 1 ? "" : "s"} with prompts · paint on a few images, then press Run.`;
  const dep = project.deployed_model_number;
  document.getElementById("deployed-line").textContent = dep != null ? `Deployed model: v${dep} · rules v${project.active_rules_version ?? "?"}` : `No model deployed yet · rules v${project.active_rules_version ?? "?"}`;
}

async function refresh() {
  [project, images, predictions] = await Promise.all([loadProject(pid), loadImages(pid), loadPredictions(pid)]);
  stamp = Date.now();
  render();
}

[...Object.values(filters), sortBy].forEach((f) => f.addEventListener("change", render));

// ---- upload: drag and drop, per-file progress and errors ----
const dz = document.getElementById("dropzone");
if (dz) {
  const input = document.getElementById("file-input");
  const list = document.getElementById("upload-list");
  ["dragenter", "dragover"].forEach((t) => dz.addEventListener(t, (e) => { e.preventDefault(); dz.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => dz.addEventListener(t, (e) => { e.preventDefault(); dz.classList.remove("over"); }));
  dz.addEventListener("drop", (e) => uploadAll([...e.dataTransfer.files]));
  input.addEventListener("change", () => { uploadAll([...input.files]); input.value = ""; });

  async function uploadOne(file) {
    const bar = h("progress", { max: 100, value: 0 });
    const state = h("span", { class: "state" }, "waiting");
    const li = h("li", { "data-testid": "upload-item", "data-name": file.name }, h("span", { class: "name", title: file.name }, file.name), bar, state);
    list.prepend(li);
    const fd = new FormData();
    fd.append("file", file, file.name);
    const verdict = document.getElementById("upload-verdict").value;
    if (verdict) fd.append("verdict", verdict);
    state.textContent = "uploading";
    try {
      const res = await uploadXHR(`${API}/projects/${pid}/images/`, fd, { onProgress: (f) => { bar.value = Math.round(100 * f); } });
      bar.value = 100;
      const dup = res && res.created === 0 && res.duplicates > 0;
      state.textContent = dup ? "duplicate" : "done";
      li.classList.add("done");
      li.dataset.state = "done";
      return res;
    } catch (ex) {
      li.classList.add("failed");
      li.dataset.state = "failed";
      state.textContent = ex.status ? `error ${ex.status}` : "error";
      li.append(h("span", { class: "err", "data-testid": "upload-error" }, errorText(ex.body) || ex.message));
      return null;
    }
  }

  async function uploadAll(files) {
    if (!files.length) return;
    // one request per file, one at a time: per-file progress and errors, and
    // SQLite deployments never see concurrent writers from one browser
    const items = files.map((f) => ({ file: f }));
    for (const it of items) await uploadOne(it.file);
    await refresh();
  }
}

// ---- Run ----
// the thumbnails in the window: Run predicts them first
function onScreen() {
  return [...thumbs.querySelectorAll(".thumb")].filter((el) => {
    const r = el.getBoundingClientRect();
    return r.bottom > 0 && r.top < window.innerHeight;
  }).map((el) => el.dataset.imageId).slice(0, 200);
}

const runner = setupRun({
  projectId: pid,
  root: document.getElementById("runbar"),
  visible: onScreen,
  // each chunk of the propagation: its thumbnails update at once
  onLanded: (rows) => {
    for (const p of rows) predictions.set(String(p.image), normPrediction(p, p.image));
    render();
  },
  onDone: async () => { await refresh(); toast("Predictions updated"); },
});
document.addEventListener("keydown", (e) => {
  if (!runner || typing(e)) return;
  if ((e.key === "r" || e.key === "R") && !e.ctrlKey && !e.metaKey && !e.altKey) { e.preventDefault(); runner.run(); }
});
if (runner && PD.active_job) runner.follow(PD.active_job);

refresh().catch((ex) => thumbs.replaceChildren(h("div", { class: "error" }, ex.message)));
