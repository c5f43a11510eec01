// Report and dashboard charts, drawn with the vendored Chart.js (static/vendor/chart.umd.min.js) from the page's JSON
// endpoint (data-charts-src); no inline script, so the admin CSP stays strict. Each canvas has a text alternative.
(function () {
  "use strict";
  const root = document.querySelector("[data-charts-src]");
  if (!root || typeof window.Chart === "undefined") return;
  const Chart = window.Chart;

  const C = { open: "#2563eb", click: "#16a34a", machine: "#94a3b8", unsub: "#d97706", bounce: "#dc2626",
              complaint: "#7c3aed", held: "#f59e0b", skipped: "#94a3b8", failed: "#dc2626", waiting: "#cbd5e1",
              delivered: "#16a34a", total: "#0f172a", newc: "#60a5fa" };
  Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  Chart.defaults.color = "#334155";
  Chart.defaults.maintainAspectRatio = false;

  function canvas(name) { return root.querySelector(`canvas[data-chart="${name}"]`); }
  function empty(name, message) {
    const el = canvas(name);
    if (!el) return;
    const p = document.createElement("p");
    p.className = "muted chart-empty";
    p.textContent = message;
    el.replaceWith(p);
  }
  // A link's label: its path and query (the host when that is all there is), on up to two lines of 30 characters
  // (longer ones shortened in the middle), so the axis shows it whole instead of cutting it off.
  function twoLines(url) {
    let s = url;
    try {
      const u = new URL(url);
      s = (u.pathname === "/" && !u.search) ? u.host : u.pathname + u.search;
    } catch (e) { /* not a URL: show as is */ }
    if (s.length > 60) s = s.slice(0, 34) + "…" + s.slice(-25);
    return s.length > 30 ? [s.slice(0, 30), s.slice(30)] : s;
  }
  function sum(a) { return a.reduce((n, v) => n + v, 0); }
  function line(label, data, color, extra) {
    return Object.assign({ label, data, borderColor: color, backgroundColor: color, tension: 0.25, pointRadius: 2,
                           borderWidth: 2 }, extra || {});
  }
  const draw = {};

  draw.report = function (d) {
    const t = d.timeline;
    const unitName = { hour: "hour (UTC)", day: "day (UTC)", week: "week (UTC)" }[t.unit];
    if (canvas("engagement")) {
      // An empty plot with one point at zero reads as broken: right after a send, say why it is empty.
      if (!t.labels.length || !(sum(t.series.opens) + sum(t.series.clicks) + sum(t.series.opens_machine)))
        empty("engagement", "Nothing to chart yet: no opens or clicks recorded.");
      else new Chart(canvas("engagement"), {
        type: "line",
        data: { labels: t.labels, datasets: [
          line("Opens by people", t.series.opens, C.open),
          line("Clicks by people", t.series.clicks, C.click),
          // Shown, dashed: hiding it by default made its legend entry look struck through (switched off).
          line("Opens by machines (proxies, scanners)", t.series.opens_machine, C.machine, { borderDash: [4, 4] }),
        ] },
        options: { interaction: { mode: "index", intersect: false },
                   scales: { y: { beginAtZero: true, ticks: { precision: 0 } },
                             x: { title: { display: true, text: "per " + unitName } } } },
      });
    }
    if (canvas("losses")) {
      const s = t.series;
      if (!t.labels.length || !(sum(s.unsubscribes || []) + sum(s.bounces || []) + sum(s.complaints || [])))
        empty("losses", "No unsubscribes, bounces or complaints.");
      else new Chart(canvas("losses"), {
        type: "bar",
        data: { labels: t.labels, datasets: [
          { label: "Unsubscribes", data: s.unsubscribes, backgroundColor: C.unsub },
          { label: "Bounces", data: s.bounces, backgroundColor: C.bounce },
          { label: "Complaints", data: s.complaints, backgroundColor: C.complaint },
        ] },
        options: { scales: { x: { stacked: true, title: { display: true, text: "per " + unitName } },
                             y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
      });
    }
    if (canvas("links")) {
      if (!d.links.length) empty("links", "This campaign has no tracked links.");
      else if (!d.links.some((l) => l.people || l.clicks))
        empty("links", "No clicks yet: its links are listed under “Clicks per link” below.");
      else {
        const el = canvas("links");
        el.parentElement.style.height = Math.max(180, 42 * d.links.length + 60) + "px";
        new Chart(el, {
          type: "bar",
          data: { labels: d.links.map((l) => twoLines(l.url)), datasets: [
            { label: "People who clicked", data: d.links.map((l) => l.people), backgroundColor: C.click },
            { label: "All clicks by people", data: d.links.map((l) => l.clicks), backgroundColor: C.open },
          ] },
          options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } },
                                               y: { ticks: { autoSkip: false } } },
                     plugins: { tooltip: { callbacks: { title: (items) => d.links[items[0].dataIndex].url } } } },
        });
      }
    }
    if (canvas("outcomes")) {
      const o = d.outcomes;
      const parts = [["Delivered", o.delivered, C.delivered], ["Bounced", o.bounced, C.bounce],
                     ["Failed", o.failed, C.failed], ["Outcome unknown", o.unknown || 0, "#a78bfa"], ["Held", o.held, C.held], ["Skipped", o.skipped, C.skipped],
                     ["Waiting", o.waiting, C.waiting]].filter((p) => p[1] > 0);
      if (!parts.length) empty("outcomes", "Nothing sent yet.");
      else new Chart(canvas("outcomes"), {
        type: "doughnut",
        data: { labels: parts.map((p) => p[0]), datasets: [{ data: parts.map((p) => p[1]),
                                                              backgroundColor: parts.map((p) => p[2]) }] },
        options: { plugins: { legend: { position: "right" } } },
      });
    }
    if (canvas("rules")) {
      if (!d.rules.length) empty("rules", "No send was held or skipped.");
      else new Chart(canvas("rules"), {
        type: "bar",
        data: { labels: d.rules.map((r) => r.label || r.reason), datasets: [
          { label: "Held now (retried automatically)", data: d.rules.map((r) => r.held), backgroundColor: C.held },
          { label: "Skipped", data: d.rules.map((r) => r.skipped), backgroundColor: C.skipped },
        ] },
        options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
      });
    }
  };

  draw.dashboard = function (d) {
    if (canvas("growth")) new Chart(canvas("growth"), {
      data: { labels: d.labels, datasets: [
        { type: "line", label: "Contacts", data: d.growth.total, borderColor: C.total, backgroundColor: C.total,
          yAxisID: "y", tension: 0.2, pointRadius: 0, borderWidth: 2 },
        { type: "bar", label: "New contacts", data: d.growth.new, backgroundColor: C.newc, yAxisID: "y1" },
        { type: "bar", label: "Unsubscribed", data: d.growth.unsubscribed, backgroundColor: C.unsub, yAxisID: "y1" },
      ] },
      options: { interaction: { mode: "index", intersect: false },
                 scales: { y: { position: "left", ticks: { precision: 0 }, title: { display: true, text: "contacts" } },
                           y1: { position: "right", beginAtZero: true, ticks: { precision: 0 },
                                 grid: { drawOnChartArea: false }, title: { display: true, text: "per week" } },
                           x: { title: { display: true, text: "week starting (UTC)" } } } },
    });
    if (canvas("trend")) new Chart(canvas("trend"), {
      type: "line",
      data: { labels: d.labels, datasets: [
        line("People who opened", d.engagement.opened, C.open),
        line("People who clicked", d.engagement.clicked, C.click),
      ] },
      options: { interaction: { mode: "index", intersect: false },
                 scales: { y: { beginAtZero: true, ticks: { precision: 0 } },
                           x: { title: { display: true, text: "week starting (UTC); machine opens not counted" } } } },
    });
  };

  // On a big list the figures are counted by a background job: {"pending": true} until then, so ask again.
  function load(tries) {
    fetch(root.dataset.chartsSrc, { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
      .then((data) => {
        if (data.pending) {
          if (tries > 0) { setTimeout(() => load(tries - 1), 3000); return; }
          throw new Error("still being counted");
        }
        draw[root.dataset.chartsKind](data);
        root.setAttribute("data-charts-ready", "true");
      })
      .catch(() => {
        root.querySelectorAll("canvas[data-chart]").forEach((el) => {
          const p = document.createElement("p");
          p.className = "flash error";
          p.textContent = "The chart data could not be loaded. Reload the page to try again.";
          el.replaceWith(p);
        });
      });
  }
  load(100);
})();
