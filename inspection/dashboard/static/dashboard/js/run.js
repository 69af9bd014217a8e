// The Run button: POST /projects/{id}/train/ (train + propagate), then a live
// progress bar from the job row until it ends. Used by the overview and editor.
// visible(): ids of the images on screen (their predictions land first);
// onLanded(predictions): called as each chunk of the propagation lands, with the
// predictions stored since the last call (GET /jobs/{id}/predictions/?since=).
import { api, pollJob, jobIdOf, errorText, h } from "./api.js";

export function setupRun({ projectId, root, onDone, visible, onLanded }) {
  if (!root) return null;
  const button = root.querySelector("[data-run]");
  const box = root.querySelector(".job");
  const bar = box.querySelector("progress");
  const msg = box.querySelector(".msg");
  const cancel = box.querySelector("[data-cancel]");
  let running = false;
  let current = null;
  if (cancel) cancel.addEventListener("click", async () => {
    if (!current) return;
    cancel.disabled = true;
    try { await api(`/jobs/${current}/cancel/`, { method: "POST", body: {} }); }
    catch (ex) { msg.textContent = errorText(ex.body) || ex.message; }
    finally { cancel.disabled = false; }
  });

  function show(job) {
    box.classList.remove("hidden", "failed", "warn");
    const p = Number(job.progress ?? 0);
    bar.value = p;
    bar.dataset.state = job.state || job.status || "";
    box.dataset.state = bar.dataset.state;
    const state = bar.dataset.state;
    const extra = job.message && job.message !== state ? ` · ${job.message}` : "";
    msg.textContent = `${state || "queued"} · ${Math.round(p)} %${extra}`;
    if (cancel) cancel.classList.toggle("hidden", !(state === "queued" || state === "running"));
  }

  // the job's predictions that landed since the last read (a chunk at a time)
  function lander(jobId) {
    let since = null;
    let doneSeen = 0;
    let busy = false;
    return async (job) => {
      const done = job && job.chunks ? Number(job.chunks.done_items || 0) : 0;
      if (!onLanded || busy || done <= doneSeen) return;
      busy = true;
      try {
        const q = since ? `&since=${encodeURIComponent(since)}` : "";
        const page = await api(`/jobs/${jobId}/predictions/?page_size=500${q}`);
        const rows = Array.isArray(page) ? page : (page.results || []);
        doneSeen = done;
        if (rows.length) {
          since = rows[rows.length - 1].created_at;
          await onLanded(rows);
        }
      } catch (ex) { /* the next poll tries again */ }
      finally { busy = false; }
    };
  }

  async function follow(jobId) {
    running = true;
    box.dataset.settled = "";
    current = jobId;
    button.disabled = true;
    const land = lander(jobId);
    try {
      const job = await pollJob(jobId, { onUpdate: (j) => { show(j); land(j); } });
      const state = job.state || job.status;
      if (state === "succeeded") {
        bar.value = 100;
        // the job's own words: which version was made, whether it was deployed
        // or is a candidate, and a warning when it scores worse than the one before
        const secs = job.timings && job.timings.total ? ` (${Number(job.timings.total).toFixed(1)} s)` : "";
        const guard = job.result && job.result.guard;
        // the warning's evidence is long: the run bar says what happened, the
        // Images page's comparison card gives the figures and the way back
        const said = (job.message || "predictions updated").split(". Warning: ")[0];
        msg.replaceChildren(`Done: ${said}${secs}`);
        if (guard) {
          msg.append(h("span", { class: "guard-line", "data-testid": "run-guard" },
            ` Warning: v${job.result.model_number} scores ${guard.verdict === "worse" ? "clearly worse than" : "worse in part than"} v${guard.previous.number}. `,
            h("a", { href: `/projects/${projectId}/#lifecycle` }, "See why, undo or keep")));
        }
        box.classList.toggle("warn", Boolean(guard));
        box.dataset.guard = guard ? guard.verdict : "";
        if (onDone) await onDone(job);
        box.dataset.settled = "1"; // the page has taken the finished job in
      } else {
        box.classList.add("failed");
        msg.textContent = `${state}: ${job.error || job.message || "no message"}`;
      }
      return job;
    } catch (ex) {
      box.classList.add("failed");
      msg.textContent = ex.message;
    } finally {
      running = false;
      current = null;
      button.disabled = false;
      if (cancel) cancel.classList.add("hidden");
    }
    return null;
  }

  async function run() {
    if (running || button.disabled) return;
    box.classList.remove("hidden", "failed");
    bar.value = 0;
    bar.dataset.state = "starting";
    box.dataset.state = "starting";
    box.dataset.settled = "";
    msg.textContent = "Starting…";
    try {
      const ids = visible ? visible() : [];
      const data = await api(`/projects/${projectId}/train/`, { method: "POST", body: ids.length ? { visible: ids } : {} });
      const jobId = jobIdOf(data);
      if (data && data.job && typeof data.job === "object") show(data.job);
      return await follow(jobId);
    } catch (ex) {
      box.classList.add("failed");
      bar.dataset.state = "refused";
      box.dataset.state = "refused";
      msg.textContent = errorText(ex.body) || ex.message;
    }
    return null;
  }

  button.addEventListener("click", run);
  return { run, follow };
}
