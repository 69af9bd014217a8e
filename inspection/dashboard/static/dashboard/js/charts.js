// Two small charts drawn on <canvas> by hand: a line of NG rate per time bucket
// and a histogram. No library.
const GRID = "#e6e9ee", AXIS = "#8a93a1", TEXT = "#5a6473";

function setup(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 400, h = canvas.clientHeight || 200;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, w, h };
}

function empty(ctx, w, h, text) {
  ctx.fillStyle = AXIS; ctx.textAlign = "center"; ctx.fillText(text, w / 2, h / 2);
}

function niceStep(max, n = 4) {
  const raw = max / n, p = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || raw;
}

// points: [{t: Date, rate: 0..1, n}] sorted by t
export function lineChart(canvas, points, { label = "NG rate" } = {}) {
  const { ctx, w, h } = setup(canvas);
  if (!points.length) return empty(ctx, w, h, "No inspections in this range.");
  const L = 40, R = 10, T = 10, B = 24;
  const t0 = points[0].t.getTime(), t1 = points[points.length - 1].t.getTime();
  const x = (t) => L + (t1 === t0 ? (w - L - R) / 2 : ((t - t0) / (t1 - t0)) * (w - L - R));
  const top = Math.max(0.05, ...points.map((p) => p.rate));
  const step = niceStep(top);
  const ymax = Math.ceil(top / step - 1e-9) * step; // the axis ends on a labelled tick
  const y = (v) => h - B - (v / ymax) * (h - T - B);
  ctx.strokeStyle = GRID; ctx.fillStyle = TEXT; ctx.textAlign = "right"; ctx.lineWidth = 1;
  for (let v = 0; v <= ymax + 1e-9; v += step) {
    ctx.beginPath(); ctx.moveTo(L, y(v)); ctx.lineTo(w - R, y(v)); ctx.stroke();
    ctx.fillText(`${Math.round(v * 100)}%`, L - 4, y(v) + 4);
  }
  ctx.textAlign = "center";
  const fmtT = (t) => new Date(t).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  ctx.fillText(fmtT(t0), x(t0) + 30, h - 6);
  if (t1 !== t0) ctx.fillText(fmtT(t1), x(t1) - 30, h - 6);
  ctx.strokeStyle = "#c62f2f"; ctx.lineWidth = 2; ctx.beginPath();
  points.forEach((p, i) => (i ? ctx.lineTo(x(p.t.getTime()), y(p.rate)) : ctx.moveTo(x(p.t.getTime()), y(p.rate))));
  ctx.stroke();
  ctx.fillStyle = "#c62f2f";
  points.forEach((p) => { ctx.beginPath(); ctx.arc(x(p.t.getTime()), y(p.rate), 3, 0, Math.PI * 2); ctx.fill(); });
  canvas.dataset.points = String(points.length);
  canvas.setAttribute("aria-label", `${label}: ${points.length} points`);
}

// values: numbers; log-spaced bins when the range is wide
export function histogram(canvas, values, { bins = 12 } = {}) {
  const { ctx, w, h } = setup(canvas);
  if (!values.length) return empty(ctx, w, h, "No blobs in this range.");
  const L = 34, R = 10, T = 10, B = 24;
  const lo = Math.min(...values), hi = Math.max(...values);
  const useLog = lo > 0 && hi / lo > 50;
  const f = useLog ? Math.log10 : (v) => v;
  const a = f(lo), b = f(hi) + 1e-9;
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor(((f(v) - a) / (b - a || 1)) * bins))]++;
  const cmax = Math.max(...counts);
  const bw = (w - L - R) / bins;
  const y = (c) => h - B - (c / cmax) * (h - T - B);
  ctx.strokeStyle = GRID; ctx.fillStyle = TEXT; ctx.textAlign = "right";
  const step = niceStep(cmax);
  for (let c = 0; c <= cmax; c += step) { ctx.beginPath(); ctx.moveTo(L, y(c)); ctx.lineTo(w - R, y(c)); ctx.stroke(); ctx.fillText(String(c), L - 4, y(c) + 4); }
  ctx.fillStyle = "#2f5fd0";
  counts.forEach((c, i) => { if (c) ctx.fillRect(L + i * bw + 1, y(c), bw - 2, h - B - y(c)); });
  ctx.fillStyle = TEXT; ctx.textAlign = "left"; ctx.fillText(String(Math.round(lo)), L, h - 6);
  ctx.textAlign = "right"; ctx.fillText(`${Math.round(hi)}${useLog ? " (log scale)" : ""}`, w - R, h - 6);
  canvas.dataset.bins = String(bins);
}

// group rows by a time bucket sized to the span (hour, day)
export function ngRateSeries(rows) {
  if (!rows.length) return [];
  const ts = rows.map((r) => new Date(r.created_at || r.time).getTime()).filter((t) => !Number.isNaN(t));
  const span = Math.max(...ts) - Math.min(...ts);
  const bucket = span > 3 * 86400e3 ? 86400e3 : span > 3 * 3600e3 ? 3600e3 : span > 600e3 ? 600e3 : 60e3;
  const m = new Map();
  rows.forEach((r) => {
    const t = new Date(r.created_at || r.time).getTime();
    if (Number.isNaN(t)) return;
    const k = Math.floor(t / bucket) * bucket;
    const e = m.get(k) || { n: 0, ng: 0 };
    e.n++; if (r.verdict === "NG") e.ng++;
    m.set(k, e);
  });
  return [...m.entries()].sort((a, b) => a[0] - b[0]).map(([k, e]) => ({ t: new Date(k), rate: e.ng / e.n, n: e.n }));
}
