// Admin behaviour shared by every page (no inline script, so the CSP stays strict):
// confirmation of destructive forms, and the live sending progress bar of a campaign page.
(function () {
  "use strict";

  // Forms with data-confirm ask before they submit (send now, cancel…).
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // ---------------------------------------------------------------- live sending progress
  const box = document.querySelector("[data-progress-url]");
  if (!box) return;
  const bar = box.querySelector(".bar");
  const badge = document.getElementById("status");
  const KEYS = ["sent", "held", "failed", "unknown", "skipped"];
  let shownStatus = badge ? badge.textContent.trim() : "";

  function render(p) {
    const done = KEYS.reduce((n, k) => n + (p[k] || 0), 0);
    const total = p.recipients || 0;
    const pct = total ? Math.min(100, Math.round((100 * done) / total)) : (p.status === "finished" ? 100 : 0);
    KEYS.forEach((k) => {
      const seg = bar.querySelector(`[data-seg="${k}"]`);
      if (seg) seg.style.width = (total ? (100 * (p[k] || 0)) / total : 0) + "%";
    });
    bar.setAttribute("aria-valuenow", String(pct));
    const counts = Object.assign({}, p, { percent: pct });
    box.querySelectorAll("[data-count]").forEach((el) => {
      const v = counts[el.dataset.count];
      if (v !== undefined) el.textContent = String(v);
    });
    const waiting = box.querySelector('[data-count="waiting"]');
    if (waiting) waiting.hidden = !p.waiting;
    const retrying = box.querySelector("[data-retrying]");
    if (retrying) retrying.hidden = !p.retrying;
    if (badge && p.status !== shownStatus) {
      badge.textContent = p.status;
      badge.className = "badge " + ({ running: "ok", finished: "done", paused: "warn", cancelled: "muted" }[p.status] || "");
    }
    const wasRunning = shownStatus === "running";
    shownStatus = p.status;
    // The page's buttons depend on the status: reload once when a run ends (finished, paused by a relay…).
    if (wasRunning && p.status !== "running") window.setTimeout(() => window.location.reload(), 800);
    return p.status === "running" || p.status === "scheduled";
  }

  async function tick() {
    let again = true;
    try {
      const r = await fetch(box.dataset.progressUrl, { headers: { Accept: "application/json" } });
      if (r.ok) again = render(await r.json());
    } catch (e) { /* offline for a moment: try again */ }
    if (again) window.setTimeout(tick, shownStatus === "scheduled" ? 10000 : 1000);
  }
  tick();
})();
