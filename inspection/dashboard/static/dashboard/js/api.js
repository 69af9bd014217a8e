// Thin client for /api/v1/ with the session cookie and the CSRF header.
// Every page module imports from here; nothing else talks to the network.

export const API = "/api/v1";

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) return meta.content;
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export class ApiError extends Error {
  constructor(status, body) {
    super(errorText(body) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// Flatten DRF-style error bodies ({detail}, {field: [msgs]}, nested) into one line.
export function errorText(body) {
  if (body == null) return "";
  if (typeof body === "string") return body;
  if (Array.isArray(body)) return body.map(errorText).filter(Boolean).join("; ");
  if (typeof body === "object") {
    if (body.detail) {
      const fields = body.errors && typeof body.errors === "object" ? errorText(body.errors) : "";
      return fields ? `${errorText(body.detail)}: ${fields}` : errorText(body.detail);
    }
    if (body.error && typeof body.error === "string") return body.error;
    if (body.message && typeof body.message === "string") return body.message;
    return Object.entries(body)
      .map(([k, v]) => (k === "non_field_errors" ? errorText(v) : `${k}: ${errorText(v)}`))
      .join("; ");
  }
  return String(body);
}

export async function api(path, { method = "GET", body, form, signal } = {}) {
  const url = path.startsWith("/") && !path.startsWith(API) ? API + path : path;
  const headers = { Accept: "application/json" };
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  const res = await fetch(url, { method, headers, body: payload, credentials: "same-origin", signal });
  let data = null;
  const ct = res.headers.get("content-type") || "";
  if (res.status !== 204) data = ct.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// Lists are paginated: accept {results, next} or a bare array, follow `next`.
export async function apiAll(path, { limit = 2000 } = {}) {
  let url = path;
  const out = [];
  while (url && out.length < limit) {
    const data = await api(url);
    if (Array.isArray(data)) return out.concat(data);
    out.push(...(data.results || []));
    url = data.next || null;
  }
  return out;
}

// Multipart upload with progress (fetch has no upload progress).
export function uploadXHR(url, formData, { onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url.startsWith(API) ? url : API + url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.withCredentials = true;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = xhr.responseText; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data));
    };
    xhr.onerror = () => reject(new ApiError(0, "network error"));
    xhr.send(formData);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

// Poll /jobs/{id}/ until a terminal state; onUpdate(job) on each read.
export async function pollJob(jobId, { onUpdate, interval = 400, timeoutMs = 30 * 60 * 1000 } = {}) {
  const t0 = Date.now();
  for (;;) {
    const job = await api(`/jobs/${jobId}/`);
    if (onUpdate) onUpdate(job);
    if (TERMINAL.has(job.state || job.status)) return job;
    if (Date.now() - t0 > timeoutMs) throw new Error("timed out waiting for the job");
    await sleep(interval);
  }
}

export function jobIdOf(data) {
  if (!data) return null;
  if (data.job && typeof data.job === "object") return data.job.id;
  if (data.job) return data.job;
  return data.job_id || data.id || null;
}

// ---- small DOM helpers ----
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Keyboard shortcuts stay off while the user types in a text field.
export function typing(e) {
  const t = e.target;
  if (!t || !t.closest) return false;
  if (t.closest("textarea, select, [contenteditable]")) return true;
  const input = t.closest("input");
  return Boolean(input && !["checkbox", "radio", "range", "button", "file", "color"].includes(input.type));
}

export function pageData() {
  const el = document.getElementById("page-data");
  return el ? JSON.parse(el.textContent) : {};
}

export function toast(msg, { error = false, ms = 4000 } = {}) {
  const el = h("div", { class: "toast" + (error ? " error" : ""), role: "status" }, msg);
  document.body.append(el);
  setTimeout(() => el.remove(), ms);
}

export function verdictBadge(verdict, severity) {
  if (!verdict) return h("span", { class: "badge" }, "—");
  const v = String(verdict).toUpperCase();
  const b = h("span", { class: "badge " + (v === "NG" ? "ng" : "ok"), "data-verdict": v }, v);
  if (v === "NG" && severity) b.append(" · " + severity);
  return b;
}

export function pct(x, digits = 1) {
  return x == null || Number.isNaN(x) ? "—" : `${(100 * x).toFixed(digits)} %`;
}

// a rate's 95 % interval ([low, high], from the server) as "0.0–56.2 %"; "" without one
export function pctInterval(iv, digits = 1) {
  return Array.isArray(iv) && iv.length === 2
    ? `${(100 * iv[0]).toFixed(digits)}–${(100 * iv[1]).toFixed(digits)} %`
    : "";
}

export function fmt(x, digits = 2) {
  if (x == null || x === "") return "—";
  if (typeof x !== "number") return String(x);
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// Hex "#rrggbb" -> [r, g, b]
export function hexRgb(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
  if (!m) return [200, 40, 40];
  const n = parseInt(m[1], 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
