// Pure helpers of the editor's canvas (editor.js): which prompt a point touches,
// run-length masks, colours, loading an image. Coordinates: image pixels.

// distance from point to segment
export function segDist(px, py, [ax, ay], [bx, by]) {
  const dx = bx - ax, dy = by - ay;
  const L = dx * dx + dy * dy;
  const t = L ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / L)) : 0;
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}
export function touches(p, x, y, r, scale) {
  if (p.kind === "stroke") {
    const pts = p.points;
    if (pts.length === 1) return Math.hypot(x - pts[0][0], y - pts[0][1]) <= r + p.radius;
    for (let i = 1; i < pts.length; i++) if (segDist(x, y, pts[i - 1], pts[i]) <= r + p.radius) return true;
    return false;
  }
  if (p.kind === "point") return Math.hypot(x - p.points[0][0], y - p.points[0][1]) <= r + 4 / scale;
  if (p.kind === "polygon") return inside(p.points, x, y) || p.points.some((a, i) => segDist(x, y, a, p.points[(i + 1) % p.points.length]) <= r);
  const [[x0, y0], [x1, y1]] = p.points;
  const inX = x >= Math.min(x0, x1) - r && x <= Math.max(x0, x1) + r;
  const inY = y >= Math.min(y0, y1) - r && y <= Math.max(y0, y1) + r;
  const nearEdge = Math.min(Math.abs(x - x0), Math.abs(x - x1)) <= r || Math.min(Math.abs(y - y0), Math.abs(y - y1)) <= r;
  return inX && inY && nearEdge;
}

// whether (x, y) is inside the polygon [[x, y], ...] (even-odd rule)
export function inside(pts, x, y) {
  let c = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i], [xj, yj] = pts[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) c = !c;
  }
  return c;
}

// {size: [H, W], counts: [...]}: row-major run lengths starting with a run of 0s
export function rleDecode(rle, n) {
  const out = new Uint8Array(n);
  let idx = 0, val = 0;
  for (const c of rle.counts) {
    if (val) out.fill(1, idx, Math.min(n, idx + c));
    idx += c;
    val = 1 - val;
  }
  return out;
}
// colour the pixels of `bits` (0/1 per pixel, row-major) in `image` (an ImageData)
export function paintMask(image, bits, [r, g, b], alpha = 255) {
  const d = image.data;
  for (let i = 0; i < bits.length; i++) if (bits[i]) { d[i * 4] = r; d[i * 4 + 1] = g; d[i * 4 + 2] = b; d[i * 4 + 3] = alpha; }
}
export function hexToRgb(hex) { const n = parseInt(hex.slice(1), 16); return [(n >> 16) & 255, (n >> 8) & 255, n & 255]; }
export function loadImage(src) {
  return new Promise((res, rej) => { const i = new Image(); i.onload = () => res(i); i.onerror = () => rej(new Error("image failed to load")); i.src = src; });
}
