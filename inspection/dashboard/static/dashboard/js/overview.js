import { API, api, uploadXHR, h, pageData, typing, verdictBadge, errorText, toast } from "./api.js";
import { loadImages, loadPredictions, loadProject, coldStart, reviewOrder, normPrediction } from "./shapes.js";
import { setupRun } from "./run.js";
import { shownModel, chooseShown, modelLabel, plural, comparisonView, strokesList, promptsCount, deployConfirm, deployedWhen } from "./lifecycle.js";

const PD = pageData();
const pid = PD.project_id;
let project = null;
let images = [];
let predictions = new Map();
let stamp = Date.now();
let summary = null;
let shown = null;
let landing = null; // a Run's new version whose predictions are landing now

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
                    "data-predicted": p ? p.verdict : "", "data-model": p ? p.modelNumber : "", "data-rules": p ? p.rulesVersion : "", title: disagree ? "the prediction disagrees with the ground truth" : null },
    h("a", { class: "img", href: `/projects/${pid}/images/${im.id}/`, title: im.name },
      h("img", { src, alt: im.name, loading: "lazy", "data-testid": "thumb-img" })),
    h("div", { class: "badges" }, p ? verdictBadge(p.verdict, p.severity) : null),
    p && p.uncertainty != null ? h("span", { class: "badge unsure unsure-corner", "data-testid": "uncertainty",
      title: "share of the inspected area the model is unsure about: paint corrections on the most uncertain images first" },
      `unsure ${(100 * p.uncertainty).toFixed(p.uncertainty < 0.1 ? 1 : 0)} %`) : null,
    h("div", { class: "fname", "data-testid": "thumb-name", title: im.name }, im.name),
    h("div", { class: "meta" },
      im.gtVerdict ? h("span", { class: "badge " + (im.gtVerdict === "NG" ? "soft-ng" : "soft-ok"), title: "ground truth" }, "GT " + im.gtVerdict) : null,
      im.hasMask ? h("span", { class: "badge", title: "ground-truth mask" }, "mask") : null,
      im.promptCount ? h("span", { class: "strokes", title: plural(im.promptCount, "prompt") }, `✎ ${im.promptCount}`) : null,
      h("span", { class: "spacer" }),
      p ? h("a", { class: "why", href: `/projects/${pid}/decisions/${im.id}/`, "data-testid": "decision-link", title: "why this verdict" }, "why?") : null));
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
    : `${plural(cs.n, "image")}: ready to train (minimum ${cs.min})`;
  const prompted = images.filter((i) => i.promptCount).length;
  document.getElementById("prompt-summary").textContent = `${plural(prompted, "image")} with prompts · paint on a few images, then press Run.`;
  const dep = project.deployed_model_number;
  const how = summary ? deployedWhen(summary) : "";
  document.getElementById("deployed-line").textContent = dep != null
    ? `The line uses v${dep}${how ? ` (${how})` : ""} · rules v${project.active_rules_version ?? "?"}`
    : `No model deployed yet · rules v${project.active_rules_version ?? "?"}`;
  renderShowing();
}

// whose predictions the thumbnails show, and the switch
function renderShowing() {
  const el = document.getElementById("showing");
  if (landing != null) {
    el.classList.remove("hidden");
    el.dataset.model = "landing";
    el.replaceChildren(h("span", {}, "Showing the predictions of ", h("strong", { "data-testid": "showing-model" }, `v${landing}`), " as they land (Run in progress)"));
    return;
  }
  el.classList.toggle("hidden", !shown && landing == null);
  if (!shown) { el.replaceChildren(); el.dataset.model = ""; return; }
  el.dataset.model = shown.kind;
  el.dataset.number = shown.number;
  const cand = project.candidate_model, dep = project.deployed_model_number;
  const other = shown.kind === "candidate" ? (dep != null ? "deployed" : null) : (cand ? "candidate" : null);
  el.replaceChildren(...[
    h("span", {}, "Showing the predictions of ", h("strong", { "data-testid": "showing-model" }, modelLabel(shown)),
      shown.kind === "candidate" ? h("span", { class: "muted" }, ` (not deployed: the line uses v${dep})`) : cand ? h("span", { class: "muted" }, ` (newer candidate: v${cand.number})`) : null),
    other ? h("button", { class: "btn small", type: "button", "data-testid": "showing-switch", onclick: async () => { chooseShown(pid, other); await refresh(); } },
      other === "deployed" ? `Show deployed v${dep}` : `Show candidate v${cand.number}`) : null].filter(Boolean));
}

function renderNext(step) {
  const box = document.getElementById("next-step");
  if (!step) { box.classList.add("hidden"); return; }
  box.classList.remove("hidden");
  box.dataset.code = step.code;
  document.getElementById("next-title").textContent = step.title;
  document.getElementById("next-detail").textContent = step.detail;
  const slot = document.getElementById("next-action");
  let action = null;
  if (step.href) action = h("a", { class: "btn primary", href: step.href, "data-testid": "next-action" }, step.label);
  else if (step.action === "run" && runner) action = h("button", { class: "btn run", type: "button", "data-testid": "next-action", onclick: () => runner.run() }, step.label);
  else if (step.action === "deploy" && PD.can_edit) action = h("button", { class: "btn primary", type: "button", "data-testid": "next-action", onclick: () => deployCandidate() }, step.label);
  else if (step.action === "undo" && PD.can_edit) action = h("button", { class: "btn danger", type: "button", "data-testid": "next-action", onclick: () => undoStrokes(step.model_version) }, step.label);
  slot.replaceChildren(...(action ? [action] : []));
}

// the candidate against the deployed version, and the guard
function renderLifecycle() {
  const card = document.getElementById("lifecycle");
  const s = summary;
  const guard = s && s.guard;
  if (!s || (!s.candidate && !guard)) { card.classList.add("hidden"); return; }
  card.classList.remove("hidden");
  const title = document.getElementById("lifecycle-title");
  const buttons = document.getElementById("lifecycle-buttons");
  const body = document.getElementById("lifecycle-body");
  const cand = s.candidate;
  title.textContent = cand ? `Candidate v${cand.number} against deployed v${s.deployed.number}` : `Deployed v${s.deployed.number} against v${guard.baseline.number}`;
  const btns = [];
  if (PD.can_edit && cand) {
    btns.push(h("button", { class: "btn primary", type: "button", "data-testid": "deploy-candidate", onclick: () => deployCandidate() }, `Deploy v${cand.number}…`));
    btns.push(h("button", { class: "btn", type: "button", "data-testid": "keep-deployed", title: `v${cand.number} stops being the candidate`, onclick: () => keep(cand) }, `Keep v${s.deployed.number}`));
  }
  buttons.replaceChildren(...btns);
  // when the guard compares the same two versions, its box already says the assessment
  const same = guard && s.comparison && guard.baseline.id === s.comparison.baseline.id && guard.candidate.id === s.comparison.candidate.id;
  body.replaceChildren(...(s.comparison ? [comparisonView(s.comparison, { note: !same })] : []));
  const g = document.getElementById("guard");
  if (!guard) { g.classList.add("hidden"); g.replaceChildren(); return; }
  g.classList.remove("hidden");
  const newest = guard.candidate, prev = guard.baseline;
  const added = guard.prompts.added;
  g.replaceChildren(
    h("div", { class: "notice error guard-box" },
      h("strong", {}, guard.assessment.summary + "."),
      added.length
        ? h("div", {}, `Added since v${prev.number}: ${promptsCount(guard.prompts.added_kinds)}`, strokesList(pid, added))
        : h("div", {}, `No label was added since v${prev.number}${guard.prompts.n_removed ? `; ${promptsCount(guard.prompts.removed_kinds)} removed` : ""}.`),
      PD.can_edit ? h("div", { class: "inline-fields" },
        guard.prompts.n_added || guard.prompts.n_removed
          ? h("button", { class: "btn danger", type: "button", "data-testid": "guard-undo", onclick: () => undoStrokes(newest.id) },
            `Undo ${guard.prompts.n_added ? promptsCount(guard.prompts.added_kinds) : "the changes"} (back to v${prev.number})`)
          : null,
        h("button", { class: "btn", type: "button", "data-testid": "guard-keep", onclick: () => keep(newest, prev) }, `Keep v${prev.number}`)) : null));
}

async function deployCandidate() {
  const cand = summary && summary.candidate;
  if (!cand) return;
  const done = await deployConfirm({ projectId: pid, model: cand, deployedNumber: summary.deployed ? summary.deployed.number : null });
  if (done) { chooseShown(pid, "candidate"); await refresh(); }
}

async function keep(model, prev) {
  try {
    const r = await api(`/models/${model.id}/dismiss/`, { method: "POST", body: {} });
    toast(`Kept v${r.kept ? r.kept.number : prev ? prev.number : "?"}: v${model.number} is set aside`);
    await refresh();
  } catch (ex) { toast(errorText(ex.body) || ex.message, { error: true }); }
}

async function undoStrokes(modelId) {
  try {
    const r = await api(`/models/${modelId}/undo-strokes/`, { method: "POST", body: {} });
    toast(`${plural(r.deleted, "label")} undone${r.restored ? `, ${r.restored} restored` : ""} (${r.images.join(", ")}); v${r.kept.number} kept`);
    await refresh();
  } catch (ex) { toast(errorText(ex.body) || ex.message, { error: true }); }
}

async function refresh() {
  [project, images, summary] = await Promise.all([loadProject(pid), loadImages(pid), api(`/projects/${pid}/candidate/`)]);
  shown = shownModel(project);
  landing = null;
  predictions = await loadPredictions(pid, shown ? shown.id : null);
  stamp = Date.now();
  render();
  renderLifecycle();
  renderNext(await api(`/projects/${pid}/next-step/`).catch(() => null));
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
      bar.value = 100;
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
    prepareWatch();
  }
}

// ---- features prepared after uploads (a "prepare" job per upload burst) ----
// the newest prepare job's message ("features ready for 37 of 120 images"), polled
// while it is queued or running
async function prepareWatch() {
  const line = document.getElementById("prepare-line");
  if (!line) return;
  let page;
  try { page = await api(`/projects/${pid}/jobs/?kind=prepare&page_size=1`); } catch { return; }
  const job = page.results && page.results[0];
  if (!job) { line.textContent = ""; return; }
  const active = job.state === "queued" || job.state === "running";
  line.dataset.state = job.state;
  const done = job.message.charAt(0).toUpperCase() + job.message.slice(1);
  line.textContent = active ? `Preparing features for the first Run: ${job.message}` : (job.state === "succeeded" ? done : "");
  if (active) setTimeout(prepareWatch, 1500);
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
  // each chunk of the propagation: its thumbnails update at once (the new version's)
  onLanded: (rows) => {
    for (const p of rows) predictions.set(String(p.image), normPrediction(p, p.image));
    if (rows.length && (!shown || String(rows[0].model_version) !== shown.id)) landing = rows[0].model_number;
    render();
  },
  onDone: async (job) => {
    // a new candidate is what the engineer wants to see after a Run
    if (job.result && job.result.model_version) chooseShown(pid, "candidate");
    await refresh();
  },
});
document.addEventListener("keydown", (e) => {
  if (!runner || typing(e)) return;
  if ((e.key === "r" || e.key === "R") && !e.ctrlKey && !e.metaKey && !e.altKey) { e.preventDefault(); runner.run(); }
});
if (runner && PD.active_job) runner.follow(PD.active_job);

refresh().catch((ex) => thumbs.replaceChildren(h("div", { class: "error" }, ex.message)));
prepareWatch();
