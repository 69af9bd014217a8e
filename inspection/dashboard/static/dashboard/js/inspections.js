// Inspections log: filters, table, CSV export, NG rate over time and blob-area histogram.
import { api, apiAll, h, pageData, verdictBadge, when, fmt, debounce, errorText, uploadXHR, API, pctInterval } from "./api.js";
import { lineChart, histogram, ngRateSeries } from "./charts.js";

const PD = pageData();
const pid = PD.project_id;
const form = document.getElementById("log-filters");
let rows = [];

function query() {
  const q = new URLSearchParams();
  const f = new FormData(form);
  if (f.get("verdict")) q.set("verdict", f.get("verdict"));
  if (f.get("station")) q.set("station", f.get("station").trim());
  if (f.get("since")) q.set("created_after", new Date(f.get("since")).toISOString());
  if (f.get("until")) q.set("created_before", new Date(f.get("until")).toISOString());
  const review = f.get("review");
  if (review === "misjudged") q.set("misjudged", "true");
  else if (review === "unreviewed") q.set("reviewed", "false");
  else if (review === "reviewed") q.set("reviewed", "true");
  else if (review === "queue") { q.set("reviewed", "false"); q.set("image_kept", "true"); q.set("ordering", "-uncertainty"); }
  if (f.get("input") === "flagged") q.set("input_ok", "false");
  else if (f.get("input") === "ok") q.set("input_ok", "true");
  if (f.get("shadow") === "disagrees") q.set("shadow_disagrees", "true");
  q.set("page_size", "500");
  return q;
}

function reasonText(r) {
  const rs = r.reasons || [];
  if (!rs.length) return "";
  return rs[0].message || `${rs[0].rule_id}`;
}
const modelOf = (r) => r.model_number ?? "";
function reviewCell(r) {
  if (!r.review) return h("span", { class: "muted" }, "—");
  const wrong = r.misjudged ? (r.verdict === "OK" ? "escape" : "overkill") : "";
  return h("span", { class: wrong ? "ng-text" : "ok-text", "data-testid": "log-review-cell", title: r.review.note || "" },
    `really ${r.review.verdict}${wrong ? " · " + wrong : ""}`);
}
const rulesOf = (r) => r.rules_version ?? "";
// an image the input check found unlike the training images
function inputMark(r) {
  if (r.input_ok !== false) return "";
  const issues = (r.input_check && r.input_check.issues) || [];
  return h("span", { class: "badge warn", style: "margin-left:4px", "data-testid": "log-input-flag", title: issues.map((i) => i.message).join("\n") },
    `input: ${issues.map((i) => i.measure).join(", ") || "unlike training"}`);
}

function render() {
  document.getElementById("log-count").textContent = `${rows.length} inspection${rows.length === 1 ? "" : "s"}`;
  const body = document.getElementById("log-rows");
  body.replaceChildren(...(rows.length ? rows.slice(0, 1000).map((r) => h("tr", { "data-testid": "log-row" },
    h("td", {}, h("a", { href: `/projects/${pid}/inspections/${r.id}/` }, when(r.created_at))),
    h("td", {}, verdictBadge(r.verdict), inputMark(r)),
    h("td", {}, r.severity || ""),
    h("td", {}, r.station || ""),
    h("td", {}, r.part_id || ""),
    h("td", { class: "small" }, reasonText(r)),
    h("td", { class: "small" }, reviewCell(r)),
    h("td", { class: "num" }, (r.blobs || []).length),
    h("td", {}, modelOf(r) !== "" ? `v${modelOf(r)}` : ""),
    h("td", {}, rulesOf(r) !== "" ? `v${rulesOf(r)}` : ""),
    h("td", { class: "num" }, r.latency_ms != null ? `${fmt(r.latency_ms, 0)} ms` : "")))
    : [h("tr", {}, h("td", { colspan: 11, class: "empty" }, "No inspections match."))]));
  const chronological = [...rows].sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0));
  lineChart(document.getElementById("chart-ng"), ngRateSeries(chronological));
  histogram(document.getElementById("chart-area"), rows.flatMap((r) => (r.blobs || []).map((b) => b.area_px).filter((a) => a > 0)));
}

// the filters live in the page's address too, so a filtered log can be linked
const FILTERS = ["verdict", "station", "since", "until", "review", "input", "shadow"];
function filtersToUrl() {
  const q = new URLSearchParams();
  for (const name of FILTERS) if (form[name] && form[name].value) q.set(name, form[name].value);
  const url = `${location.pathname}${q.toString() ? "?" + q : ""}`;
  if (url !== `${location.pathname}${location.search}`) history.replaceState(null, "", url);
}
function filtersFromUrl() {
  const asked = new URLSearchParams(location.search);
  for (const name of FILTERS) if (asked.has(name) && form[name]) form[name].value = asked.get(name);
  // the API's own names, as other pages link them
  if (asked.get("shadow_disagrees") === "true") form.shadow.value = "disagrees";
  if (asked.get("input_ok") === "false") form.input.value = "flagged";
}

async function load() {
  filtersToUrl();
  try {
    rows = await apiAll(`/projects/${pid}/inspections/?${query()}`, { limit: 5000 });
  } catch (ex) {
    rows = [];
    document.getElementById("log-rows").replaceChildren(h("tr", {}, h("td", { colspan: 11, class: "error" }, errorText(ex.body) || ex.message)));
    return;
  }
  render();
  loadSummary();
}

function inputText(s) {
  if (!s.n_input_flagged) return "";
  return h("span", { "data-testid": "log-input-summary" }, ` · ${s.n_input_flagged} image${s.n_input_flagged === 1 ? "" : "s"} unlike the training images (${s.input_check === "ng" ? "judged NG" : "flagged"})`);
}

// what reviews found: the line's real escapes and overkills
async function loadSummary() {
  const el = document.getElementById("review-summary");
  try {
    const s = await api(`/projects/${pid}/inspections/summary/`);
    const banner = document.getElementById("line-alert");
    const a = s.alert;
    banner.hidden = !a.active;
    if (a.active) banner.textContent = `Line alert since ${when(a.changed_at)}: ${(100 * a.window_ng_rate).toFixed(1)} % of the newest ${a.window} inspections are NG (alert level ${(100 * a.ng_rate_level).toFixed(1)} %). Check the process, the optics and the latest decisions.`;
    const r = s.reviews;
    el.replaceChildren(r.reviewed
      ? h("span", {}, `${r.reviewed} reviewed: `,
          h("b", { class: r.escapes ? "ng-text" : "" }, `${r.escapes} escape${r.escapes === 1 ? "" : "s"}`), r.escape_rate != null ? ` (${(100 * r.escape_rate).toFixed(1)} % of real NG; 95 %: ${pctInterval(r.escape_interval)})` : "", ", ",
          h("b", { class: r.overkills ? "ng-text" : "" }, `${r.overkills} overkill${r.overkills === 1 ? "" : "s"}`), r.overkill_rate != null ? ` (${(100 * r.overkill_rate).toFixed(1)} % of real OK; 95 %: ${pctInterval(r.overkill_interval)})` : "",
          `; ${r.promoted} added to the training images · images kept: ${s.n_images_kept} (policy: ${s.keep_inspection_images})`, inputText(s))
      : h("span", { class: "muted" }, `No decision reviewed yet: open one and say what the part really is. Images kept: ${s.n_images_kept} (policy: ${s.keep_inspection_images}).`, inputText(s)));
  } catch (ex) { el.textContent = ""; }
}

// CSV comes from the server's export (same filters as the table)
document.getElementById("export").addEventListener("click", () => {
  const q = query();
  q.delete("page_size");
  q.set("format", "csv");
  const a = h("a", { href: `${API}/projects/${pid}/inspections/export/?${q}`, download: `inspections-${pid}.csv` });
  document.body.append(a); a.click(); a.remove();
});

const reload = debounce(load, 250);
form.addEventListener("input", reload);
form.addEventListener("change", reload);

const inspectForm = document.getElementById("inspect-form");
if (inspectForm) {
  inspectForm.addEventListener("submit", async () => {
    const out = document.getElementById("inspect-result");
    const files = inspectForm.file.files;
    if (!files.length) { out.textContent = "Choose one or more images."; return; }
    const fd = new FormData();
    for (const f of files) fd.append("file", f, f.name);
    if (inspectForm.station.value) fd.append("station", inspectForm.station.value);
    if (inspectForm.part_id.value) fd.append("part_id", inspectForm.part_id.value);
    out.textContent = "Inspecting…";
    try {
      const res = await uploadXHR(`${API}/projects/${pid}/inspect/`, fd);
      if (res.verdict) out.replaceChildren(verdictBadge(res.verdict, res.severity), " ", (res.reasons || []).map((r) => r.message).join("; "));
      else out.textContent = `Batch started: job ${res.job?.id || res.job || ""}`;
      load();
    } catch (ex) { out.replaceChildren(h("span", { class: "error" }, errorText(ex.body) || ex.message)); }
  });
}

filtersFromUrl();
load();
window.addEventListener("resize", debounce(render, 200));
