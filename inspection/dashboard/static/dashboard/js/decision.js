// Decision detail: the image with its blobs outlined (SVG over the image),
// every blob's measures and the rule that made the image NG.
import { API, api, h, pageData, fmt, when, errorText, typing } from "./api.js";
import { classesOf, normPrediction, loadPredictions } from "./shapes.js";
import { hexToRgb, paintMask, rleDecode } from "./canvas.js";

const PD = pageData();
const pid = PD.project_id;
const classes = classesOf({ classes: PD.classes });
const colourOf = (n) => (classes.find((c) => c.name === n) || { colour: "#ff4d4d" }).colour;
const SVGNS = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs) => { const e = document.createElementNS(SVGNS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };

function blobClass(b) { return b.class_name ?? b.class ?? b.label ?? "—"; }

// the share of inspected pixels near their class threshold (null: not measured)
function unsure(u) { return typeof u === "number" ? ` · unsure ${(100 * u).toFixed(1)} % of the inspected area` : ""; }

const verdictBadgeSmall = (v) => h("span", { class: `badge ${v === "NG" ? "ng" : "ok"}` }, v);

// the input check of an inspection: was the image taken like the training images?
function renderInputCheck(check) {
  const box = document.getElementById("input-check");
  if (!box) return;
  if (!check || !check.mode) { box.replaceChildren(); return; }
  if (!check.checked) {
    // the engine says why (too few training images, or a model older than the check)
    const why = check.unchecked_reason || "the model carries no ranges of its training images";
    box.replaceChildren(h("div", { class: "small muted", "data-state": "unchecked", "data-testid": "input-unchecked" }, `Input check: not done (${why}).`));
    return;
  }
  const p = check.profile || {};
  const seen = `brightness ${fmt(p.brightness, 0)}, contrast ${fmt(p.contrast, 0)}, focus ${fmt(p.focus, 2)}, detail ${fmt(p.detail, 1)}, size ${fmt(p.scale, 0)} px`;
  if (!check.issues.length) {
    box.replaceChildren(h("div", { class: "small muted", "data-state": "ok" }, `Input check: taken like the training images (${seen}).`));
    return;
  }
  const head = check.mode === "ng" ? "Image unlike the training images: judged NG." : "Image unlike the training images: the verdict stands, but check it by eye.";
  box.replaceChildren(h("div", { class: "notice warn", "data-state": "flagged" },
    h("b", {}, head),
    ...check.issues.map((i) => h("div", { class: "small", "data-testid": "input-issue", "data-measure": i.measure }, i.message))));
}

function render(dec, { imageUrl, overlayUrl, width, height, meta }) {
  const verdict = dec.verdict || "—";
  const v = document.getElementById("verdict");
  v.textContent = verdict;
  v.className = "verdict-big " + (verdict === "NG" ? "ng" : "ok");
  document.getElementById("severity").replaceChildren(dec.severity ? h("span", { class: "badge sev" }, dec.severity) : "");
  document.getElementById("versions").textContent = meta.versions || "";
  document.getElementById("decision-meta").textContent = meta.text || "";

  const reasons = dec.reasons || [];
  const byBlob = new Map();
  reasons.forEach((r) => { if (r.blob_id != null) byBlob.set(r.blob_id, [...(byBlob.get(r.blob_id) || []), r]); });
  document.getElementById("reasons").replaceChildren(...(reasons.length ? reasons.map((r) => h("div", { class: "reason", "data-testid": "reason", "data-blob-id": r.blob_id ?? null },
    h("div", {}, h("b", {}, r.message || `${r.rule_type} ${r.measure} ${fmt(r.value)} ≥ ${fmt(r.threshold)}`)),
    h("div", { class: "rid" }, `rule ${r.rule_id} · ${r.rule_type}${r.class_name ? " · " + r.class_name : ""}${r.blob_id != null ? " · blob #" + r.blob_id : ""} · ${r.severity || ""}`)))
    : [h("div", { class: "notice ok", "data-testid": "reason" }, "No rule fired: the image is OK.")]));

  renderInputCheck(dec.input_check);
  const sh = dec.shadow || {};
  document.getElementById("shadow-verdict").replaceChildren(...(sh.model_number == null ? [] : sh.error
    ? [h("span", { class: "muted" }, `Shadow v${sh.model_number} failed on this image: ${sh.error}`)]
    : [h("span", { class: "muted" }, `Shadow v${sh.model_number} (decides nothing): `), verdictBadgeSmall(sh.verdict),
       sh.verdict === dec.verdict ? " agrees" : h("b", { "data-state": "disagrees" }, " disagrees"),
       sh.reasons && sh.reasons.length ? h("span", { class: "muted" }, ` · ${sh.reasons[0]}`) : ""]));

  const blobs = dec.blobs || [];
  document.getElementById("nblobs").textContent = `(${blobs.length})`;
  document.getElementById("blob-rows").replaceChildren(...(blobs.length ? blobs.map((b) => {
    const rs = byBlob.get(b.id) || [];
    return h("tr", { class: rs.length ? "blob-hot" : "", "data-blob-id": b.id, "data-testid": "blob-row" },
      h("td", {}, `#${b.id}`),
      h("td", {}, h("span", { class: "swatch", style: `background:${colourOf(blobClass(b))}` }), " ", blobClass(b)),
      h("td", { class: "num" }, Number(b.area_px).toLocaleString("en-US"), b.area_mm2 == null ? null : h("div", { class: "muted" }, `${fmt(b.area_mm2, 3)} mm²`)),
      h("td", { class: "num" }, `${fmt(b.length, b.length < 10 ? 1 : 0)} × ${fmt(b.width, b.width < 10 ? 1 : 0)}`),
      h("td", { class: "num" }, `${fmt(b.mean_prob, 2)} / ${fmt(b.max_prob, 2)}`),
      h("td", { class: "rules-cell", "data-testid": "blob-rule" }, rs.length ? rs.map((r) => h("span", { class: "badge soft-ng", title: r.message || "" }, r.rule_id)) : h("span", { class: "muted" }, "—")));
  }) : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No blobs."))]));

  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "xMidYMid meet", "data-testid": "decision-svg" });
  svg.style.width = "100%";
  if (imageUrl) {
    svg.style.height = "calc(100vh - 200px)";
    svg.style.minHeight = "360px";
  } else {
    // no image kept: the blobs' places on a small outline of the image, not a page of dark canvas
    svg.style.height = "220px";
  }
  svg.append(svgEl("rect", { x: 0, y: 0, width, height, fill: "#2a3038" }));
  if (imageUrl) svg.append(svgEl("image", { href: imageUrl, x: 0, y: 0, width, height }));
  if (overlayUrl) { const o = svgEl("image", { href: overlayUrl, x: 0, y: 0, width, height, opacity: 0.7 }); svg.append(o); }
  const sw = Math.max(1, width / 250);
  for (const b of blobs) {
    if (!b.bbox) continue;
    const [x0, y0, x1, y1] = b.bbox;
    const hot = byBlob.has(b.id);
    const col = hot ? "#ff3b3b" : colourOf(blobClass(b));
    const g = svgEl("g", { "data-blob-id": b.id });
    g.append(svgEl("rect", { x: x0 - 1, y: y0 - 1, width: x1 - x0 + 2, height: y1 - y0 + 2, fill: "none", stroke: col, "stroke-width": sw * (hot ? 1.6 : 1), rx: sw }));
    const t = svgEl("text", { x: x0, y: Math.max(8 * sw, y0 - 2 * sw), fill: col, "font-size": 7 * sw, "font-family": "system-ui", "font-weight": 700, "paint-order": "stroke", stroke: "#000", "stroke-width": sw * 0.6 });
    t.textContent = `#${b.id}`;
    g.append(t);
    const title = svgEl("title", {}); title.textContent = `${blobClass(b)} · ${fmt(b.area_px, 0)} px`; g.append(title);
    svg.append(g);
  }
  document.getElementById("decision-view").replaceChildren(...(imageUrl ? [svg] : [
    h("div", { class: "not-stored", "data-testid": "image-not-stored" },
      h("b", {}, "The image was not kept"), " (the project's setting keeps only some inspected images; Settings → which production images the log keeps).",
      blobs.length ? " Where the blobs were, on the image's outline:" : " No blob was found."),
    ...(blobs.length ? [svg] : [])]));
  // hovering a blob's row (or a reason naming it) highlights its outline
  const focus = (id, on) => {
    const g = svg.querySelector(`g[data-blob-id="${id}"] rect`);
    if (g) { g.setAttribute("stroke-width", on ? sw * 3 : g.dataset.sw || sw); g.setAttribute("stroke", on ? "#ffd23f" : g.dataset.col); }
  };
  svg.querySelectorAll("g[data-blob-id] rect").forEach((r) => { r.dataset.sw = r.getAttribute("stroke-width"); r.dataset.col = r.getAttribute("stroke"); });
  document.querySelectorAll("#blob-rows tr[data-blob-id]").forEach((tr) => {
    tr.addEventListener("mouseenter", () => focus(tr.dataset.blobId, true));
    tr.addEventListener("mouseleave", () => focus(tr.dataset.blobId, false));
  });
  document.querySelectorAll("#reasons [data-blob-id]").forEach((el) => {
    el.addEventListener("mouseenter", () => focus(el.dataset.blobId, true));
    el.addEventListener("mouseleave", () => focus(el.dataset.blobId, false));
  });
}

// ------------------------------------------------------------------ review (inspections)
function showReview(ins) {
  const r = ins.review;
  const state = document.getElementById("review-state");
  if (!state) return;
  state.dataset.verdict = r ? r.verdict : "";
  state.textContent = r
    ? `· really ${r.verdict}${ins.misjudged ? (ins.verdict === "OK" ? " (an escape)" : " (an overkill)") : " (the line was right)"}${r.reviewed_by ? " · by " + r.reviewed_by : ""}${r.note ? " · " + r.note : ""}`
    : "· not reviewed";
  state.className = "small " + (r ? (ins.misjudged ? "ng-text" : "ok-text") : "muted");
  const clear = document.getElementById("review-clear");
  if (clear) clear.hidden = !r;
  const promote = document.getElementById("promote");
  if (promote) {
    promote.hidden = !ins.image_kept;
    if (r && r.image) setPromoted(r.image, false);
  }
  const msg = document.getElementById("review-msg");
  if (!ins.image_kept) msg.replaceChildren(h("span", { class: "muted" }, "The image was not kept (project setting “keep inspection images”), so it can't be added to the training images."));
}

function setPromoted(imageId, created) {
  document.getElementById("promote-result").replaceChildren(
    created ? "Added. " : "In the training images. ",
    h("a", { href: `/projects/${pid}/images/${imageId}/`, "data-testid": "promoted-link" }, "Open it in the editor to paint"));
}

function wireReview(ins) {
  const msg = document.getElementById("review-msg");
  const fail = (ex) => msg.replaceChildren(h("div", { class: "notice error" }, errorText(ex.body) || ex.message));
  const send = async (verdict) => {
    try {
      const note = document.getElementById("review-note").value;
      Object.assign(ins, await api(`/inspections/${ins.id}/review/`, { method: "POST", body: { verdict, note } }));
      showReview(ins);
    } catch (ex) { fail(ex); }
  };
  document.getElementById("review-ok")?.addEventListener("click", () => send("OK"));
  document.getElementById("review-ng")?.addEventListener("click", () => send("NG"));
  // the review queue: unreviewed decisions with a kept image, most unsure first
  const next = async () => {
    try {
      const q = await api(`/projects/${pid}/inspections/?reviewed=false&image_kept=true&ordering=-uncertainty&page_size=2`);
      const other = (q.results || []).find((i) => String(i.id) !== String(ins.id));
      if (other) window.location.assign(`/projects/${pid}/inspections/${other.id}/`);
      else msg.replaceChildren(h("span", { class: "ok-text", "data-testid": "queue-empty" }, "Nothing else to review: every kept decision has a review."));
    } catch (ex) { fail(ex); }
  };
  document.getElementById("review-next")?.addEventListener("click", next);
  if (document.getElementById("review-ok")) {
    document.addEventListener("keydown", (e) => {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      const k = e.key.toLowerCase();
      if (k === "o") send("OK");
      else if (k === "n") send("NG");
      else if (k === "u") next();
    });
  }
  document.getElementById("review-clear")?.addEventListener("click", async () => {
    try {
      await api(`/inspections/${ins.id}/review/`, { method: "DELETE" });
      Object.assign(ins, await api(`/inspections/${ins.id}/`));
      showReview(ins);
    } catch (ex) { fail(ex); }
  });
  document.getElementById("promote")?.addEventListener("click", async (e) => {
    const button = e.currentTarget;
    button.disabled = true;
    try {
      const res = await api(`/inspections/${ins.id}/promote/`, { method: "POST" });
      setPromoted(res.image.id, res.created);
    } catch (ex) { fail(ex); } finally { button.disabled = false; }
  });
}

// a logged inspection's pixels over its kept image: the server judges the image
// again with the model and rules that judged it (the log keeps blobs, not pixels)
const ANOMALY_COLOUR = "#ffb000";
async function showPixels(ins) {
  const ans = await api(`/inspections/${ins.id}/masks/?encoding=rle`);
  const [H, W] = ans.size;
  const off = document.createElement("canvas");
  off.width = W; off.height = H;
  const octx = off.getContext("2d");
  const data = octx.createImageData(W, H);
  const shown = [];
  for (const m of ans.masks) {
    if (!m.area_px) continue;
    const colour = hexToRgb(m.class === "anomaly" ? ANOMALY_COLOUR : colourOf(m.class));
    paintMask(data, rleDecode({ counts: m.rle }, W * H), colour, 140);
    shown.push(`${m.class} ${fmt(m.area_px, 0)} px`);
  }
  octx.putImageData(data, 0, 0);
  const svg = document.querySelector("[data-testid=decision-svg]");
  const base = svg && svg.querySelector("image");
  if (!base) return;
  const layer = svgEl("image", { href: off.toDataURL(), x: 0, y: 0, width: W, height: H, "data-testid": "decision-pixels" });
  base.after(layer);
  const toggle = h("input", { type: "checkbox", checked: true, "data-testid": "pixels-toggle" });
  toggle.addEventListener("change", () => { layer.style.display = toggle.checked ? "" : "none"; });
  document.getElementById("decision-meta").append(h("div", { class: "small", "data-testid": "pixels-note" },
    h("label", {}, toggle, ` pixels: ${shown.join(", ") || "none"}`),
    ans.matches_logged ? "" : h("span", { class: "ng-text" }, " · judged again, they differ from the log (has the project's scale changed?)")));
}

async function main() {
  if (PD.source === "inspection") {
    const ins = await api(`/inspections/${PD.inspection_id}/`).catch(async () => {
      const list = await api(`/projects/${pid}/inspections/?id=${PD.inspection_id}`);
      return (list.results || list).find((i) => String(i.id) === PD.inspection_id);
    });
    showReview(ins);
    wireReview(ins);
    render(ins, {
      imageUrl: ins.image_kept ? `${API}/inspections/${ins.id}/image/display/` : null, overlayUrl: null,
      width: ins.width || PD.width, height: ins.height || PD.height,
      meta: { versions: `model v${ins.model_number ?? "?"} · rules v${ins.rules_version ?? ins.ruleset_version ?? "?"}`,
              text: `${when(ins.created_at)} · station ${ins.station || "—"} · part ${ins.part_id || "—"} · ${fmt(ins.latency_ms, 0)} ms${unsure(ins.uncertainty)}` },
    });
    if (ins.image_kept) showPixels(ins).catch((ex) => { document.getElementById("decision-meta").append(h("div", { class: "small muted" }, `pixels: ${errorText(ex.body) || ex.message}`)); });
  } else {
    const preds = await loadPredictions(pid);
    const p = preds.get(String(PD.image_id));
    if (!p) {
      document.getElementById("verdict").textContent = "Not predicted yet";
      document.getElementById("reasons").replaceChildren(h("div", { class: "muted" }, "Paint prompts and press Run to get a decision."));
      document.getElementById("decision-view").replaceChildren(h("img", { src: `${API}/images/${PD.image_id}/display/`, style: "max-width:100%" }));
      return;
    }
    render(p, {
      imageUrl: `${API}/images/${PD.image_id}/display/`,
      overlayUrl: p.overlayUrl || `${API}/images/${PD.image_id}/overlay/?v=${p.id}`,
      width: PD.width, height: PD.height,
      meta: { versions: `model v${p.modelNumber ?? "?"} · rules v${p.rulesVersion ?? "?"}`, text: (p.created ? `predicted ${when(p.created)}` : "") + unsure(p.uncertainty) },
    });
  }
}
main().catch((ex) => { document.getElementById("verdict").textContent = ex.message; });
