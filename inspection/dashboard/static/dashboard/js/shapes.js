// One place that reads the API's response shapes, so pages don't care about
// field spellings. Every page uses these normalisers.
import { API, apiAll, api } from "./api.js";

export function normImage(im) {
  const gt = im.verdict ?? im.gt_verdict ?? im.ground_truth_verdict ?? null;
  return {
    raw: im,
    id: im.id,
    width: im.width,
    height: im.height,
    name: im.original_name || im.filename || im.name || `image ${im.id}`,
    gtVerdict: gt || null,
    hasMask: Boolean(im.has_mask ?? im.gt_mask ?? im.mask_url ?? im.has_gt_mask),
    promptCount: im.prompt_count ?? im.prompts_count ?? im.n_prompts ?? 0,
    fileUrl: im.display_url || `${API}/images/${im.id}/display/`,
    thumbUrl: im.thumbnail_url || `${API}/images/${im.id}/thumbnail/`,
    overlayUrl: im.overlay_url || `${API}/images/${im.id}/overlay/`,
    prediction: im.prediction ? normPrediction(im.prediction, im.id) : (im.latest_prediction ? normPrediction(im.latest_prediction, im.id) : null),
  };
}

export function normPrediction(p, imageId) {
  if (!p) return null;
  const d = p.decision || p;
  return {
    raw: p,
    id: p.id,
    imageId: p.image ?? p.image_id ?? imageId,
    verdict: d.verdict ?? null,
    severity: d.severity ?? null,
    reasons: d.reasons || [],
    blobs: d.blobs || p.blobs || [],
    overlayUrl: p.overlay_url || null,
    maskUrl: p.mask_url || null,
    modelVersion: p.model_version ?? p.model ?? null,
    modelNumber: p.model_number ?? null,
    rulesVersion: p.rules_version ?? p.ruleset_version ?? null,
    truth: p.truth || null,
    uncertainty: typeof p.uncertainty === "number" ? p.uncertainty : null,
    anomalyUrl: p.anomaly_url || null,
    anomalyPeak: typeof p.anomaly_peak === "number" ? p.anomaly_peak : null,
    created: p.created || p.created_at || null,
  };
}

export function normJob(j) { return j; }

export function classesOf(project) {
  return (project.classes || project.defect_classes || []).map((c) =>
    typeof c === "string" ? { name: c, colour: "#e5484d" } : { name: c.name, colour: c.colour || c.color || "#e5484d" });
}

export async function loadImages(projectId) {
  return (await apiAll(`/projects/${projectId}/images/?page_size=500`)).map(normImage);
}

// each image's newest prediction, of one model version when given (the one
// the page shows: see lifecycle.js shownModel)
export async function loadPredictions(projectId, modelVersionId = null) {
  const only = modelVersionId ? `&model_version=${modelVersionId}` : "";
  const list = await apiAll(`/projects/${projectId}/predictions/?page_size=500${only}`);
  const byImage = new Map();
  for (const p of list) {
    const n = normPrediction(p);
    byImage.set(String(n.imageId), n);
  }
  return byImage;
}

export async function loadProject(projectId) {
  return api(`/projects/${projectId}/`);
}

// The review order ("most uncertain first", as ?ordering=-uncertainty): ties keep
// the given (upload) order, images without a measured uncertainty go last.
export function reviewOrder(images, uncertaintyOf) {
  const u = (im) => { const v = uncertaintyOf(im); return v == null ? -1 : v; };
  return images.map((im, i) => ({ im, i, u: u(im) })).sort((a, b) => b.u - a.u || a.i - b.i).map((x) => x.im);
}

export function coldStart(project, imageCount) {
  const min = project.cold_start_min ?? project.cold_start_minimum ?? project.min_images ?? 10;
  const remaining = Math.max(0, min - imageCount);
  return { min, remaining, n: imageCount };
}
