// Live sending progress: polls the JSON endpoint while a campaign runs (no inline script, so the CSP stays strict).
(function () {
  "use strict";
  const box = document.querySelector("[data-progress-url]");
  if (!box) return;
  const bar = box.querySelector(".bar");
  const fill = box.querySelector(".bar span");
  const text = document.getElementById("progress-text");
  const badge = document.getElementById("status");
  function render(p) {
    const done = p.sent + p.failed + p.skipped + p.held;
    const pct = p.recipients ? Math.round((100 * done) / p.recipients) : (p.status === "finished" ? 100 : 0);
    fill.style.width = pct + "%";
    bar.setAttribute("aria-valuenow", String(pct));
    text.textContent = `${p.sent} sent · ${p.failed} failed · ${p.skipped} skipped · ${p.remaining} remaining of ${p.recipients}`;
    if (badge) badge.textContent = p.status;
    return p.status === "running";
  }
  async function tick() {
    try {
      const r = await fetch(box.dataset.progressUrl, { headers: { Accept: "application/json" } });
      if (r.ok && render(await r.json())) setTimeout(tick, 1000);
      else if (r.ok && badge && badge.textContent !== "running") return;
    } catch (e) {
      setTimeout(tick, 3000);
    }
  }
  tick();
})();
