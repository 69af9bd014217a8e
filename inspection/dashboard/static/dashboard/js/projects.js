import { api, apiAll, h, pct, errorText } from "./api.js";

const PALETTE = ["#e5484d", "#f5a524", "#3e9bff", "#a855f7", "#10b981", "#ec4899"];
const body = document.getElementById("projects-body");
const rows = document.getElementById("class-rows");

function classRow(name = "", colour = PALETTE[rows.children.length % PALETTE.length]) {
  const row = h("div", { class: "class-row" },
    h("input", { type: "color", value: colour, "aria-label": "class colour", name: "class_colour" }),
    h("input", { type: "text", value: name, placeholder: "class name, e.g. crack", name: "class_name", required: true, pattern: "[A-Za-z0-9_\\-]+" }),
    h("button", { class: "btn small", type: "button", title: "remove", onclick: () => row.remove() }, "×"));
  rows.append(row);
}

function classesOf(p) {
  return (p.classes || p.defect_classes || []).map((c) => (typeof c === "string" ? { name: c, colour: "#888" } : { name: c.name, colour: c.colour || c.color }));
}

async function load() {
  const projects = await apiAll("/projects/");
  document.getElementById("project-count").textContent = `${projects.length} project${projects.length === 1 ? "" : "s"}`;
  body.replaceChildren();
  if (!projects.length) {
    body.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No projects yet: create one on the right.")));
    return;
  }
  for (const p of projects) {
    const counts = p.counts || p.stats || {};
    const n = p.n_images ?? counts.images;
    const ng = p.n_inspections ? p.n_inspections_ng / p.n_inspections : null;
    const dep = p.deployed_model_number;
    const depText = dep == null ? "—" : `v${dep}`;
    body.append(h("tr", { "data-project-id": p.id },
      h("td", {}, h("a", { href: `/projects/${p.id}/` }, p.name), p.description ? h("div", { class: "muted small" }, p.description) : null),
      h("td", {}, classesOf(p).map((c) => h("span", { style: "margin-right:8px" }, h("span", { class: "swatch", style: `background:${c.colour}` }), " ", c.name))),
      h("td", { class: "num" }, n ?? "—"),
      h("td", { class: "num", title: p.n_inspections ? `${p.n_inspections_ng} NG of ${p.n_inspections} inspections` : "no inspections yet" }, ng == null ? "—" : pct(ng)),
      h("td", {}, depText),
      h("td", {}, p.role ? h("span", { class: "badge role" }, p.role) : "")));
  }
}

document.getElementById("add-class").addEventListener("click", () => classRow());
classRow("defect", PALETTE[0]);

document.getElementById("create-project").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  const err = document.getElementById("create-errors");
  err.textContent = "";
  const classes = [...rows.querySelectorAll(".class-row")].map((r) => ({
    name: r.querySelector("input[type=text]").value.trim(),
    colour: r.querySelector("input[type=color]").value,
  })).filter((c) => c.name);
  const payload = { name: f.name.value.trim(), description: f.description.value.trim(), classes };
  if (f.cold_start_min.value) payload.cold_start_min = Number(f.cold_start_min.value);
  if (f.px_per_mm.value) payload.px_per_mm = Number(f.px_per_mm.value);
  if (f.backend && f.backend.value) payload.backend = f.backend.value;
  if (f.work_max_side && f.work_max_side.value !== "") payload.work_max_side = Number(f.work_max_side.value);
  try {
    const p = await api("/projects/", { method: "POST", body: payload });
    window.location.href = `/projects/${p.id}/`;
  } catch (ex) {
    err.textContent = errorText(ex.body) || ex.message;
  }
});

load().catch((ex) => { body.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "error" }, ex.message))); });
