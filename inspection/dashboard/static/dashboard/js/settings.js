// Settings: members and roles, API tokens, webhooks with their last deliveries.
import { api, apiAll, h, pageData, when, errorText, toast } from "./api.js";

const PD = pageData();
const pid = PD.project_id;
const ROLES = ["owner", "engineer", "operator", "viewer"];
const err = (id, ex) => { document.getElementById(id).textContent = ex ? errorText(ex.body) || ex.message : ""; };

async function loadMembers() {
  const members = await apiAll(`/projects/${pid}/members/`);
  document.getElementById("member-rows").replaceChildren(...members.map((m) => {
    const role = PD.can_admin
      ? h("select", { "aria-label": `role of ${m.username}`, onchange: async (e) => {
          try { await api(`/projects/${pid}/members/${m.user_id}/`, { method: "PATCH", body: { role: e.target.value } }); err("member-errors"); toast(`${m.username} is now ${e.target.value}`); }
          catch (ex) { err("member-errors", ex); e.target.value = m.role; }
        } }, ROLES.map((r) => h("option", { value: r, selected: r === m.role }, r)))
      : h("span", { class: "badge role" }, m.role);
    return h("tr", { "data-testid": "member-row" },
      h("td", {}, m.username, m.username === PD.user ? h("span", { class: "muted small" }, " (you)") : ""),
      h("td", {}, role),
      h("td", {}, PD.can_admin ? h("button", { class: "btn small danger", type: "button", onclick: async () => {
        if (!confirm(`Remove ${m.username} from the project?`)) return;
        try { await api(`/projects/${pid}/members/${m.user_id}/`, { method: "DELETE" }); err("member-errors"); loadMembers(); }
        catch (ex) { err("member-errors", ex); }
      } }, "Remove") : ""));
  }));
}

const memberForm = document.getElementById("member-form");
if (memberForm) memberForm.addEventListener("submit", async () => {
  try {
    await api(`/projects/${pid}/members/`, { method: "POST", body: { username: memberForm.username.value.trim(), role: memberForm.role.value } });
    memberForm.reset(); err("member-errors"); loadMembers();
  } catch (ex) { err("member-errors", ex); }
});

// ---- which production images the log keeps (project setting)
const keep = document.getElementById("keep-images");
const alertForm = document.getElementById("alert-form");
function showAlertSettings(p) {
  alertForm.level.value = p.alert_ng_rate == null ? "" : +(100 * p.alert_ng_rate).toFixed(3);
  alertForm.window.value = p.alert_window;
  alertForm.dataset.loaded = "1";
}
if (alertForm) alertForm.addEventListener("submit", async () => {
  const out = document.getElementById("alert-msg");
  const level = alertForm.level.value.trim();
  try {
    const p = await api(`/projects/${pid}/`, { method: "PATCH", body: { alert_ng_rate: level === "" ? null : Number(level) / 100, alert_window: Number(alertForm.window.value) } });
    showAlertSettings(p);
    out.replaceChildren(h("span", { class: "ok-text", "data-testid": "alert-saved" }, p.alert_ng_rate == null ? "Saved: no line alert." : `Saved: alert at ${+(100 * p.alert_ng_rate).toFixed(3)} % NG over the newest ${p.alert_window} inspections.`));
  } catch (ex) { out.replaceChildren(h("span", { class: "error" }, errorText(ex.body) || ex.message)); }
});
// ---- the input check: is an inspected image taken like the training images?
const inputForm = document.getElementById("input-form");
const INPUT_SAVED = { flag: "images unlike the training images are flagged", ng: "images unlike the training images are judged NG", off: "inputs are not checked" };
function showInputSettings(p) {
  inputForm.mode.value = p.input_check || "flag";
  inputForm.margin.value = p.input_check_margin ?? 0.75;
  inputForm.dataset.loaded = "1";
}
if (inputForm) inputForm.addEventListener("submit", async () => {
  const out = document.getElementById("input-msg");
  try {
    const p = await api(`/projects/${pid}/`, { method: "PATCH", body: { input_check: inputForm.mode.value, input_check_margin: Number(inputForm.margin.value) } });
    showInputSettings(p);
    out.replaceChildren(h("span", { class: "ok-text", "data-testid": "input-saved" }, `Saved: ${INPUT_SAVED[p.input_check]} (tolerance ${p.input_check_margin}).`));
  } catch (ex) { out.replaceChildren(h("span", { class: "error" }, errorText(ex.body) || ex.message)); }
});
// ---- features: the feature backend the next Run trains on
const featuresForm = document.getElementById("features-form");
const BACKEND_NAMES = { classic: "classic filters", backbone: "the backbone network", sam: "the SAM embedding" };
function showFeatureSettings(p) { featuresForm.backend.value = p.backend; featuresForm.work_max_side.value = p.work_max_side; featuresForm.dataset.loaded = "1"; }
function workSizeText(n) { return n ? `images at most ${n} px on their longer side` : "every image whole"; }
if (featuresForm) featuresForm.addEventListener("submit", async () => {
  const out = document.getElementById("features-msg");
  try {
    if (!featuresForm.work_max_side.checkValidity()) { featuresForm.work_max_side.reportValidity(); return; }
    const body = { backend: featuresForm.backend.value, work_max_side: Number(featuresForm.work_max_side.value) };
    const p = await api(`/projects/${pid}/`, { method: "PATCH", body });
    showFeatureSettings(p);
    out.replaceChildren(h("span", { class: "ok-text", "data-testid": "features-saved" }, `Saved: the next Run reads ${BACKEND_NAMES[p.backend] || p.backend}, ${workSizeText(p.work_max_side)}.`));
  } catch (ex) { out.replaceChildren(h("span", { class: "error" }, errorText(ex.body) || ex.message)); }
});
// ---- auto-deploy (cold start): every Run's version is deployed until the first inspection
const deployForm = document.getElementById("deploy-form");
function showDeploySettings(p) { deployForm.auto.checked = Boolean(p.auto_deploy); deployForm.dataset.loaded = "1"; }
if (deployForm) deployForm.auto.addEventListener("change", async () => {
  const out = document.getElementById("deploy-msg");
  try {
    const p = await api(`/projects/${pid}/`, { method: "PATCH", body: { auto_deploy: deployForm.auto.checked } });
    showDeploySettings(p);
    out.replaceChildren(h("span", { class: "ok-text", "data-testid": "deploy-saved" }, p.auto_deploy
      ? "Saved: every Run deploys its version until the first line inspection."
      : "Saved: a Run makes a candidate; Deploy puts it on the line."));
  } catch (ex) { out.replaceChildren(h("span", { class: "error" }, errorText(ex.body) || ex.message)); }
});
if (keep) {
  api(`/projects/${pid}/`).then((p) => { keep.value = p.keep_inspection_images || "none"; keep.dataset.loaded = "1"; if (alertForm) showAlertSettings(p); if (inputForm) showInputSettings(p); if (deployForm) showDeploySettings(p); if (featuresForm) showFeatureSettings(p); });
  keep.addEventListener("change", async () => {
    const out = document.getElementById("keep-images-msg");
    try {
      const p = await api(`/projects/${pid}/`, { method: "PATCH", body: { keep_inspection_images: keep.value } });
      out.replaceChildren(h("span", { class: "ok-text", "data-testid": "keep-images-saved" }, `Saved: new inspections keep ${p.keep_inspection_images === "none" ? "no images" : p.keep_inspection_images === "all" ? "every image" : p.keep_inspection_images === "ng" ? "NG images" : "NG and unsure images"}.`));
    } catch (ex) { out.replaceChildren(h("span", { class: "error" }, errorText(ex.body) || ex.message)); }
  });
}

// ---- API tokens: the API issues one token per user (POST /auth/token/ with the password)
function renderTokens(me) {
  const rows = document.getElementById("token-rows");
  const t = me && (me.token || me.api_token);
  rows.replaceChildren(h("tr", {},
    h("td", {}, `${PD.user} (personal)`),
    h("td", { class: "mono" }, t ? (typeof t === "string" ? `${t.slice(0, 6)}…` : `${(t.key || t.prefix || "").slice(0, 6)}…`) : h("span", { class: "muted" }, me && me.has_token ? "issued (hidden)" : "none yet")),
    h("td", {}, t && t.created ? when(t.created) : "—"),
    h("td", {})));
}
// a new webhook's signing secret is shown once: keep it on screen until dismissed
function showSecret(w) {
  const box = document.getElementById("webhook-secret");
  const code = h("code", { class: "secret", "data-testid": "webhook-secret" }, w.secret);
  const copy = h("button", { class: "btn small", type: "button", onclick: async () => {
    try { await navigator.clipboard.writeText(w.secret); copy.textContent = "Copied"; } catch (ex) { copy.textContent = "Select it and copy"; }
  } }, "Copy");
  box.replaceChildren(h("div", { class: "notice warn" },
    h("b", {}, `Signing secret for ${w.url}: shown once, store it now (it signs every delivery).`), code,
    copy, " ", h("button", { class: "btn small", type: "button", onclick: () => box.replaceChildren() }, "I stored it")));
}

const tokenForm = document.getElementById("token-form");
tokenForm.addEventListener("submit", async () => {
  try {
    const res = await api("/auth/token/", { method: "POST", body: { username: PD.user, password: tokenForm.password.value } });
    tokenForm.reset(); err("token-errors");
    const box = document.getElementById("token-new");
    box.classList.remove("hidden");
    box.replaceChildren("Your API token: ", h("code", { "data-testid": "token-value" }, res.token), h("div", { class: "small" }, "Use it as ", h("code", {}, `Authorization: Token ${res.token}`)));
  } catch (ex) { err("token-errors", ex); }
});

// ---- webhooks
async function loadWebhooks() {
  const box = document.getElementById("webhooks");
  let hooks;
  try { hooks = await apiAll(`/projects/${pid}/webhooks/`); }
  catch (ex) { box.replaceChildren(h("p", { class: "muted" }, errorText(ex.body) || ex.message)); return; }
  if (!hooks.length) { box.replaceChildren(h("p", { class: "muted" }, "No webhooks.")); return; }
  const cards = await Promise.all(hooks.map(async (w) => {
    const deliveries = await apiAll(`/webhooks/${w.id}/deliveries/?page_size=5`, { limit: 5 }).catch(() => []);
    return h("div", { class: "card", style: "margin-bottom:10px", "data-testid": "webhook" },
      h("div", { class: "card-head" }, h("div", {}, h("b", { class: "mono" }, w.url), " ", (w.events || []).map((e) => h("span", { class: "badge", style: "margin-left:4px" }, e)),
        w.active === false ? h("span", { class: "badge soft-ng" }, "inactive") : ""),
        PD.can_admin ? h("button", { class: "btn small danger", type: "button", onclick: async () => {
          try { await api(`/webhooks/${w.id}/`, { method: "DELETE" }); loadWebhooks(); } catch (ex) { err("webhook-errors", ex); }
        } }, "Delete") : ""),
      h("table", { class: "data" }, h("thead", {}, h("tr", {}, h("th", {}, "Event"), h("th", {}, "Status"), h("th", { class: "num" }, "Attempts"), h("th", { class: "num" }, "HTTP"), h("th", {}, "When"), h("th", {}, "Error"))),
        h("tbody", {}, deliveries.length ? deliveries.slice(0, 5).map((d) => h("tr", {},
          h("td", {}, d.event), h("td", {}, h("span", { class: "badge " + (d.status === "succeeded" ? "soft-ok" : d.status === "failed" ? "soft-ng" : "") }, d.status)),
          h("td", { class: "num" }, d.attempts), h("td", { class: "num" }, d.response_code ?? "—"), h("td", {}, when(d.delivered_at || d.created_at)),
          h("td", { class: "small" }, d.last_error || "")))
          : h("tr", {}, h("td", { colspan: 6, class: "muted small" }, "No deliveries yet.")))));
  }));
  box.replaceChildren(...cards);
}
const hookForm = document.getElementById("webhook-form");
if (hookForm) hookForm.addEventListener("submit", async () => {
  const events = [...hookForm.querySelectorAll("[name=events]:checked")].map((e) => e.value);
  try {
    const w = await api(`/projects/${pid}/webhooks/`, { method: "POST", body: { url: hookForm.url.value.trim(), events } });
    hookForm.reset(); err("webhook-errors");
    if (w.secret) showSecret(w);
    loadWebhooks();
  } catch (ex) { err("webhook-errors", ex); }
});

// ---- project
const projectForm = document.getElementById("project-form");
if (projectForm) projectForm.addEventListener("submit", async () => {
  const body = { name: projectForm.name.value.trim(), cold_start_min: Number(projectForm.cold_start_min.value) };
  body.px_per_mm = projectForm.px_per_mm.value ? Number(projectForm.px_per_mm.value) : null;
  const out = document.getElementById("project-msg");
  try { await api(`/projects/${pid}/`, { method: "PATCH", body }); out.className = "small"; out.textContent = "Saved."; }
  catch (ex) { out.className = "small error"; out.textContent = errorText(ex.body) || ex.message; }
});

loadMembers().catch((ex) => err("member-errors", ex));
api("/auth/me/").then(renderTokens).catch(() => renderTokens(null));
loadWebhooks();
