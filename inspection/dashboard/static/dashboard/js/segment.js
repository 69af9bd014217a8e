// Points and boxes -> a mask on the editor's canvas: SAM's when configured, else the
// backbone network's. A backbone click's mask is cut at a level (0: the background,
// 1: the clicked cells) the image's edges choose; "smaller" / "larger" move it.
import { api, errorText, pollJob, jobIdOf, ApiError, sleep } from "./api.js";
import { hexToRgb, loadImage, paintMask, rleDecode } from "./canvas.js";

const ENGINE_NAMES = { sam: "SAM", backbone: "Backbone" };
//: one press of smaller / larger moves the level by this much, within the API's range
const LEVEL_STEP = 0.05, LEVEL_MIN = 0.05, LEVEL_MAX = 0.95;

// ed: { iid, W, H, canvas, state, toPayload, colourOf, setStatus, draw, background }
export function segmenter(ed) {
  const { canvas, state } = ed;
  const last = { label: null, level: null };  // the mask shown: its class and level
  const buttons = ["mask-smaller", "mask-larger"].map((id) => document.getElementById(id)).filter(Boolean);
  const accept = document.getElementById("mask-accept");
  const enable = () => {
    for (const b of buttons) b.disabled = last.level === null;
    if (accept) accept.disabled = !state.samMask;
  };
  const segmentPrompts = () => state.prompts.filter((p) => !p._hidden && (p.kind === "point" || p.kind === "box")).map(ed.toPayload);

  async function show(res, label) {
    const colour = hexToRgb(ed.colourOf(label));
    const off = document.createElement("canvas");
    off.width = ed.W; off.height = ed.H;
    const octx = off.getContext("2d");
    const data = octx.createImageData(ed.W, ed.H);
    let mask = null;
    if (!res.mask_png && res.rle) {
      mask = rleDecode(res.rle, ed.W * ed.H);
    } else {
      const src = res.mask_png;
      if (typeof src !== "string") return;
      const img = await loadImage(src.startsWith("data:") || src.startsWith("/") || src.startsWith("http") ? src : `data:image/png;base64,${src}`);
      const t = document.createElement("canvas"); t.width = ed.W; t.height = ed.H;
      const tctx = t.getContext("2d"); tctx.drawImage(img, 0, 0, ed.W, ed.H);
      const px = tctx.getImageData(0, 0, ed.W, ed.H).data;
      mask = new Uint8Array(ed.W * ed.H);
      for (let i = 0; i < ed.W * ed.H; i++) mask[i] = px[i * 4] > 127 ? 1 : 0;
    }
    paintMask(data, mask, colour);
    octx.putImageData(data, 0, 0);
    state.samMask = off;
    ed.draw();
  }

  // the mask of the prompts on the image for `label`; `level` fixes the backbone's cut
  async function segment(label, level = null) {
    const prompts = segmentPrompts();
    if (!prompts.length) return;
    const t0 = performance.now();
    for (let attempt = 0; attempt < 200; attempt++) {
      try {
        // the target class: the current one, or (background selected) the service picks the prompts' class
        // run lengths: no PNG to encode on the server or decode here
        const body = label !== ed.background ? { prompts, label, output: "rle" } : { prompts, output: "rle" };
        if (level !== null) body.level = level;
        const res = await api(`/images/${ed.iid}/segment/`, { method: "POST", body });
        await show(res, res.label || label);
        last.label = res.label || label; last.level = res.level ?? null; enable();
        canvas.dataset.sam = String(res.area_px ?? 1);
        canvas.dataset.segmentEngine = res.engine || "sam";
        canvas.dataset.segmentFeaturesMs = String(res.features_ms ?? 0);
        canvas.dataset.segmentLevel = last.level === null ? "" : String(last.level);
        const cut = last.level === null ? "" : ` · level ${last.level.toFixed(2)} (, smaller · . larger)`;
        ed.setStatus(`${ENGINE_NAMES[res.engine] || "SAM"} mask · score ${Number(res.score ?? 0).toFixed(2)}${cut} · ${Math.round(performance.now() - t0)} ms`);
        return;
      } catch (ex) {
        if (ex instanceof ApiError && ex.status === 409 && ex.body?.code === "embedding_not_ready") {
          ed.setStatus("Embedding in progress… the mask appears when it is ready", "wait");
          canvas.dataset.samWaited = "1";
          const jid = jobIdOf(ex.body);
          if (jid) {
            const job = await pollJob(jid, { interval: 500 }).catch(() => null);
            if (job && (job.state === "failed" || job.state === "cancelled")) { ed.setStatus(`Embedding failed: ${job.error || job.state}`, "error"); return; }
          } else await sleep(800);
          continue;
        }
        ed.setStatus(`Segmentation unavailable: ${errorText(ex.body) || ex.message}`, "error");
        return;
      }
    }
  }

  // the shown backbone mask cut higher (smaller: +1) or lower (larger: -1)
  function resize(direction) {
    if (last.level === null) return;
    const level = Math.round(Math.min(LEVEL_MAX, Math.max(LEVEL_MIN, last.level + direction * LEVEL_STEP)) * 100) / 100;
    if (level !== last.level) segment(last.label, level);
  }
  function clear() { state.samMask = null; last.level = null; enable(); ed.setStatus(""); ed.draw(); }

  // {label, polygons}: the mask shown, as the outlines of its parts (null: none shown)
  async function polygons() {
    const prompts = segmentPrompts();
    if (!state.samMask || !last.label || !prompts.length) return null;
    const body = { prompts, label: last.label, output: "polygons" };
    if (last.level !== null) body.level = last.level;
    try {
      const res = await api(`/images/${ed.iid}/segment/`, { method: "POST", body });
      return { label: res.label || last.label, polygons: res.polygons || [] };
    } catch (ex) { ed.setStatus(`Mask not saved: ${errorText(ex.body) || ex.message}`, "error"); return null; }
  }

  buttons.forEach((b, i) => b.addEventListener("click", () => resize(i === 0 ? 1 : -1)));
  enable();
  return { segment, smaller: () => resize(1), larger: () => resize(-1), clear, polygons, onAccept: (f) => accept?.addEventListener("click", f) };
}
