// Campaign composer: live preview of unsaved MJML (debounced POST with the form's CSRF token; the HTML comes back
// as a URL served under the preview CSP, shown in sandboxed desktop and mobile iframes), problems with their line
// next to the editor, the generated plain-text part, contact pickers, the sender choice and the schedule time zone.
(function () {
  "use strict";

  function debounce(fn, ms) {
    let timer = null;
    return function (...args) {
      clearTimeout(timer);
      timer = setTimeout(() => fn.apply(this, args), ms);
    };
  }

  // ---------------------------------------------------------------- contact pickers (datalist suggestions)
  document.querySelectorAll("input[data-contact-picker]").forEach((input) => {
    const list = input.list;
    if (!list) return;
    let controller = null;
    input.addEventListener("input", debounce(async () => {
      if (controller) controller.abort();
      controller = new AbortController();
      const url = input.dataset.contactPicker + "?q=" + encodeURIComponent(input.value.trim());
      try {
        const r = await fetch(url, { headers: { Accept: "application/json" }, signal: controller.signal });
        if (!r.ok) return;
        const found = await r.json();
        list.replaceChildren(...found.map((c) => {
          const option = document.createElement("option");
          option.value = c.email;
          option.label = c.name ? `${c.name} <${c.email}>` : c.email;
          return option;
        }));
      } catch (e) { /* aborted or offline: keep the old suggestions */ }
    }, 200));
  });

  // ---------------------------------------------------------------- saved preview on the campaign page
  const savedPicker = document.querySelector("input[data-saved-preview]");
  if (savedPicker) {
    savedPicker.addEventListener("change", () => {
      const who = savedPicker.value.trim();
      document.querySelectorAll("iframe[data-preview-src]").forEach((frame) => {
        frame.src = frame.dataset.previewSrc + (who ? "?contact=" + encodeURIComponent(who) : "");
      });
    });
  }

  // ---------------------------------------------------------------- schedule: default to the browser's time zone
  const tzSelect = document.querySelector("select[data-browser-timezone]");
  if (tzSelect) {
    try {
      const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone && [...tzSelect.options].some((o) => o.value === zone)) tzSelect.value = zone;
    } catch (e) { /* keep UTC */ }
  }

  // ---------------------------------------------------------------- composer
  const form = document.getElementById("composer");
  if (!form) return;

  const sender = document.getElementById("sender");
  function syncSender() {
    const custom = sender.value === "custom";
    form.querySelectorAll("[data-sender-custom]").forEach((el) => { el.hidden = !custom; });
  }
  if (sender) {
    sender.addEventListener("change", syncSender);
    syncSender();
  }

  const editor = document.getElementById("mjml");
  const textBody = document.getElementById("text_body");
  const problems = document.getElementById("problem-list");
  const status = document.getElementById("preview-status");
  const meta = document.getElementById("preview-meta");
  const generated = document.getElementById("generated-text");
  const picker = document.getElementById("preview_as");
  const frames = form.querySelectorAll("iframe[data-live-preview]");
  let lastText = "";
  let controller = null;

  function goToLine(line) {
    const lines = editor.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    const end = start + (lines[line - 1] || "").length;
    editor.focus();
    editor.setSelectionRange(start, end);
    // Scroll the textarea so the line is visible (line height from the computed style).
    const lh = parseFloat(getComputedStyle(editor).lineHeight) || 19;
    editor.scrollTop = Math.max(0, (line - 5) * lh);
  }

  function showProblems(errors) {
    problems.replaceChildren(...errors.map((e) => {
      const li = document.createElement("li");
      if (e.line) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "link";
        b.textContent = `Line ${e.line}`;
        b.addEventListener("click", () => goToLine(e.line));
        li.append(b, ": ");
      }
      li.append(e.message);
      return li;
    }));
    editor.setAttribute("aria-invalid", errors.length ? "true" : "false");
  }

  const linkList = document.getElementById("link-list");
  function showLinks(links) {
    if (!linkList) return;
    if (!links.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No web links.";
      linkList.replaceChildren(li);
      return;
    }
    linkList.replaceChildren(...links.map((l) => {
      const li = document.createElement("li");
      const badge = document.createElement("span");
      badge.className = l.tracked ? "badge ok" : "badge warn";
      badge.textContent = l.tracked ? "tracked" : "not tracked";
      const url = document.createElement("code");
      url.textContent = l.url;
      li.append(badge, " ", url);
      if (l.note && l.note !== "tracked") li.append(` — ${l.note.replace(/^(not )?tracked(: |, )?/, "")}`);
      return li;
    }));
  }

  async function refresh() {
    if (controller) controller.abort();
    controller = new AbortController();
    const data = new FormData(form);
    data.set("contact", picker ? picker.value.trim() : "");
    status.textContent = "Checking…";
    try {
      const r = await fetch(form.dataset.previewUrl, { method: "POST", body: data, signal: controller.signal,
                                                     headers: { Accept: "application/json" } });
      if (!r.ok) {
        status.textContent = r.status === 400 ? "Your session form expired: reload the page (your text is kept until then)."
                                              : `The preview failed (HTTP ${r.status}).`;
        return;
      }
      const p = await r.json();
      showProblems(p.errors);
      if (p.url) showLinks(p.links || []);
      if (p.ok) status.textContent = "No problems found. Ready to send.";
      else status.textContent = p.errors.length === 1 ? "1 problem:" : `${p.errors.length} problems:`;
      if (p.url) {
        frames.forEach((frame) => { frame.src = p.url; });
        meta.textContent = `From ${p.from} · to ${p.contact || "a sample contact"} · Subject: ${p.subject}`;
        lastText = p.text;
        generated.textContent = textBody.value.trim() ? "(you edited the plain text above; it is what gets sent)" : p.text;
      } else if (!p.ok) {
        meta.textContent = "The preview shows the last version without errors.";
      }
    } catch (e) {
      if (e.name !== "AbortError") status.textContent = "The preview could not be reached; retrying when you type.";
    }
  }

  const refreshSoon = debounce(refresh, 600);
  form.addEventListener("input", (event) => {
    if (event.target === picker) return;   // the picker refreshes when a contact is chosen
    refreshSoon();
  });
  form.addEventListener("change", (event) => { if (event.target === picker || event.target.tagName === "SELECT") refreshSoon(); });
  // Tab in the editor indents instead of leaving it; Escape then Tab leaves (keyboard users are not trapped).
  let escaped = false;
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { escaped = true; return; }
    if (event.key === "Tab" && !event.shiftKey && !escaped) {
      event.preventDefault();
      const { selectionStart: s, selectionEnd: e } = editor;
      editor.setRangeText("  ", s, e, "end");
      refreshSoon();
    }
    if (event.key !== "Tab") escaped = false;
  });

  document.getElementById("text-edit").addEventListener("click", () => {
    if (!textBody.value.trim() && lastText) textBody.value = lastText;
    textBody.focus();
    refreshSoon();
  });
  document.getElementById("text-auto").addEventListener("click", () => {
    textBody.value = "";
    refreshSoon();
  });

  refresh();
})();
