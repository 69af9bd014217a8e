// Which model's predictions a page shows (deployed, or the newest candidate), the
// comparison of the candidate with the deployed version, the worse-model guard,
// and Deploy with confirmation. Used by the Images page, the editor and Models.
import { api, h, pct, when, toast, errorText } from "./api.js";

const key = (pid) => `shown-model:${pid}`;

// The version the pages show: the candidate when there is one, unless the
// engineer chose the deployed version; the choice is kept per project.
export function shownModel(project) {
  const dep = project.deployed_model ? { id: String(project.deployed_model), number: project.deployed_model_number, kind: "deployed" } : null;
  const cand = project.candidate_model ? { id: String(project.candidate_model.id), number: project.candidate_model.number, kind: "candidate" } : null;
  let choice = null;
  try { choice = localStorage.getItem(key(project.id)); } catch { /* private mode */ }
  if (cand && choice !== "deployed") return cand;
  return dep || cand;
}

export function chooseShown(projectId, kind) {
  try { localStorage.setItem(key(projectId), kind); } catch { /* private mode */ }
}

export function modelLabel(m) {
  if (!m) return "no model";
  return m.kind === "candidate" ? `candidate v${m.number}` : `deployed v${m.number}`;
}

export function plural(n, noun, nouns) {
  return `${n} ${n === 1 ? noun : (nouns || noun + "s")}`;
}

function iou(x) { return x == null ? "—" : Number(x).toFixed(2); }

// candidate against baseline: a small table (held-out labelled images, held-out
// strokes), the verdict changes with thumbnails, and the assessment in words
export function comparisonView(c, { note: withNote = true } = {}) {
  const b = c.baseline.number, n = c.candidate.number;
  const hb = c.held_out.baseline, hc = c.held_out.candidate, s = c.strokes;
  const cell = (x, y, worseIfHigher, id, show = String) => {
    const cls = x == null || y == null || show(x) === show(y) ? "" : ((y > x) === worseIfHigher ? "ng-text" : "ok-text");
    return h("td", { class: "num " + cls, "data-testid": id }, show(y));
  };
  const nImg = c.held_out.n_images;
  const rows = [];
  if (hb.n) {
    rows.push(h("tr", {}, h("td", {}, "escapes (defective parts passed)"), h("td", { class: "num" }, `${hb.escapes}`), cell(hb.escapes, hc.escapes, true, "cmp-escapes")));
    rows.push(h("tr", {}, h("td", {}, "overkills (good parts failed)"), h("td", { class: "num" }, `${hb.overkills}`), cell(hb.overkills, hc.overkills, true, "cmp-overkills")));
    if (hb.iou != null || hc.iou != null) rows.push(h("tr", {}, h("td", {}, `IoU on ${plural(hc.n_masks, "held-out mask")}`), h("td", { class: "num" }, iou(hb.iou)), cell(hb.iou, hc.iou, false, "cmp-iou", iou)));
  }
  rows.push(h("tr", {}, h("td", { title: "IoU on the strokes of images held out of one fit while training" }, `held-out stroke check${s.same_images ? " (same images)" : ""}`),
    h("td", { class: "num" }, iou(s.baseline)), cell(s.baseline, s.candidate, false, "cmp-loo", iou)));
  const table = h("table", { class: "data compare-table", "data-testid": "cmp-table" },
    h("thead", {}, h("tr", {}, h("th", {}, hb.n ? `on ${plural(nImg, "labelled image")} neither was trained on` : "no labelled image is held out of both"), h("th", { class: "num" }, `v${b}`), h("th", { class: "num" }, `v${n}`))),
    h("tbody", {}, ...rows));
  const unmeasured = (s.not_measured || []).map((k) => `v${k}`);
  const loNote = unmeasured.length
    ? h("p", { class: "small muted", "data-testid": "cmp-loo-note" }, `${unmeasured.join(" and ")} continued from an earlier version's weights (incremental retraining) and ran no held-out stroke check of ${unmeasured.length === 1 ? "its" : "their"} own.`)
    : null;
  const changes = c.held_out.changes || [];
  const strip = changes.length
    ? h("div", { class: "changes", "data-testid": "cmp-changes" }, ...changes.map((ch) =>
      h("div", { class: "change " + (ch.effect === "broke" ? "broke" : ch.effect === "fixed" ? "fixed" : ""), "data-testid": "cmp-change", title: ch.image_name },
        h("img", { src: ch.thumbnail_url, alt: ch.image_name }),
        h("div", { class: "meta" }, h("span", { class: "fname" }, ch.image_name)),
        h("div", { class: "meta" }, `v${b} ${ch.baseline} → v${n} ${ch.candidate}`, ch.truth ? h("span", { class: "muted" }, ` · truth ${ch.truth}`) : null))))
    : h("p", { class: "small muted", "data-testid": "cmp-no-changes" }, hb.n ? "No held-out image changes verdict." : "");
  const a = c.assessment;
  const note = h("p", { class: "notice " + (a.verdict === "worse" ? "error" : a.verdict === "mixed" ? "warn" : a.verdict === "better" ? "ok" : ""), "data-testid": "cmp-assessment", "data-verdict": a.verdict }, a.summary + ".");
  return h("div", { class: "comparison" }, withNote ? note : null, table, loNote, changes.length ? h("h3", { style: "margin-top:10px" }, `Verdict changes (${changes.length})`) : null, strip);
}

// "2 strokes and 1 polygon" for {kind: n} ("2 scratch strokes" with a label):
// strokes, points and polygons are all labels the model trains on
export function promptsCount(kinds, label = "") {
  const named = label ? `${label} ` : "";
  const parts = Object.entries(kinds || {}).filter(([, n]) => n)
    .sort(([a], [b]) => (a !== "stroke") - (b !== "stroke") || a.localeCompare(b))
    .map(([kind, n]) => plural(n, named + kind));
  if (!parts.length) return `0 ${named}labels`;
  return parts.length > 1 ? `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}` : parts[0];
}

// labels added since the previous version, by image, as links
export function strokesList(projectId, groups) {
  return h("ul", { class: "stroke-list", "data-testid": "guard-strokes" }, ...groups.map((g) =>
    h("li", {}, h("a", { href: `/projects/${projectId}/images/${g.image}/` }, g.image_name), ": ",
      Object.entries(g.kinds || {}).map(([l, kinds]) => promptsCount(kinds, l)).join(", "))));
}

// Deploy with confirmation: a dialog with the comparison; resolves true when deployed
export async function deployConfirm({ projectId, model, deployedNumber }) {
  let comparison = null;
  if (deployedNumber != null) {
    try { comparison = await api(`/models/${model.id}/comparison/`); } catch (ex) { comparison = { error: errorText(ex.body) || ex.message }; }
  }
  return new Promise((resolve) => {
    const dlg = h("dialog", { class: "dialog", "data-testid": "deploy-dialog" });
    const close = (ok) => { dlg.close(); dlg.remove(); resolve(ok); };
    const confirm = h("button", { class: "btn primary", type: "button", "data-testid": "deploy-confirm" }, `Deploy v${model.number}`);
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      try {
        await api(`/models/${model.id}/deploy/`, { method: "POST", body: {} });
        toast(`v${model.number} deployed: the line uses it from now on`);
        close(true);
      } catch (ex) { confirm.disabled = false; toast(errorText(ex.body) || ex.message, { error: true }); }
    });
    dlg.append(...[
      h("h2", {}, `Deploy v${model.number}?`),
      h("p", { class: "small" }, deployedNumber != null
        ? `The line uses v${deployedNumber} now. From the next inspection on it will use v${model.number}, with the active rules.`
        : `Nothing is deployed: the line will use v${model.number}.`),
      comparison && comparison.error ? h("p", { class: "error" }, comparison.error) : null,
      comparison && !comparison.error ? comparisonView(comparison) : null,
      h("div", { class: "dialog-buttons" }, h("button", { class: "btn", type: "button", "data-testid": "deploy-cancel", onclick: () => close(false) }, "Cancel"), confirm)].filter(Boolean));
    document.body.append(dlg);
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); close(false); });
    dlg.showModal();
  });
}

export function deployedWhen(summary) {
  if (!summary.deployed) return "";
  const how = { first: "the project's first model", auto: "deployed automatically by a Run (auto-deploy, until the first line inspection)", manual: "deployed by hand" }[summary.deployed_how] || "";
  return `${how}${summary.deployed_at ? `, ${when(summary.deployed_at)}` : ""}`;
}

export { pct };
