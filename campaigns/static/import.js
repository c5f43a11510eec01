// The column mapping: an "Attribute name" box only where a column is imported as a custom attribute (the name
// means nothing for the other choices, and empty boxes on every row read as fields left to fill in).
(function () {
  "use strict";
  document.querySelectorAll("table.import-map select[id^=col-]").forEach((select) => {
    const key = document.getElementById("key-" + select.id.slice(4));
    if (!key) return;
    const sync = () => { key.hidden = select.value !== "attribute"; };
    select.addEventListener("change", sync);
    sync();
  });
})();

// Live import progress: polls the JSON endpoint until the import has finished or failed (no inline script: CSP).
(function () {
  "use strict";
  const box = document.querySelector("[data-import-url]");
  if (!box) return;
  const bar = box.querySelector(".bar");
  const fill = box.querySelector(".bar span");
  const text = document.getElementById("import-text");
  const message = document.getElementById("import-message");
  const errors = document.getElementById("import-errors");
  function render(p) {
    fill.style.width = p.percent + "%";
    bar.setAttribute("aria-valuenow", String(p.percent));
    text.textContent = `${p.state} · ${p.read} rows read · ${p.created} created · ${p.updated} updated · ` +
      `${p.skipped} skipped · ${p.failed} failed`;
    message.textContent = p.message || "";
    if (p.errors > 0 && p.state === "finished") errors.hidden = false;
    return p.state === "queued" || p.state === "running";
  }
  async function tick() {
    try {
      const r = await fetch(box.dataset.importUrl, { headers: { Accept: "application/json" } });
      if (r.ok && render(await r.json())) setTimeout(tick, 1000);
    } catch (e) {
      setTimeout(tick, 3000);
    }
  }
  tick();
})();
