// Segment builder: AND/OR groups of rules kept in the form's JSON textarea, with a debounced live count.
// No inline script or style (the admin CSP forbids them); every control has a label for keyboard and screen readers.
(function () {
  "use strict";

  // Saved segment counts on the list page.
  // On a big list they are counted by a background job ({"pending": true} until then) and carry their age.
  async function savedCount(el, tries) {
    try {
      const r = await fetch(el.dataset.segmentCountUrl, { headers: { Accept: "application/json" } });
      const data = await r.json();
      if (r.ok && data.pending) {
        el.textContent = "counting…";
        if (tries > 0) setTimeout(() => savedCount(el, tries - 1), 3000);
        return;
      }
      el.textContent = r.ok ? data.count.toLocaleString() + (data.as_of ? ` (${data.as_of})` : "") : "—";
      if (!r.ok) el.title = data.error || "";
    } catch (e) {
      el.textContent = "—";
    }
  }
  document.querySelectorAll("[data-segment-count-url]").forEach((el) => savedCount(el, 100));

  const root = document.getElementById("segment-builder");
  if (!root) return;
  const schema = JSON.parse(root.dataset.schema);
  const textarea = document.getElementById("definition");
  const countEl = document.getElementById("segment-count");
  const sampleEl = document.getElementById("segment-sample");
  const csrf = document.querySelector("#segment-form input[name=csrf_token]").value;
  const fields = Object.fromEntries(schema.fields.map((f) => [f.name, f]));
  const MAX_DEPTH = 3;
  let uid = 0;

  function parse(text) {
    try {
      const d = JSON.parse(text || "{}");
      if (d && typeof d === "object" && Array.isArray(d.rules)) return d;
    } catch (e) { /* fall through */ }
    return null;
  }
  let model = parse(textarea.value) || { match: "all", rules: [] };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function labelled(labelText, control) {
    const id = "seg-" + (++uid);
    control.id = id;
    return el("span", { class: "seg-control" }, el("label", { for: id, class: "sr-only", text: labelText }), control);
  }

  function select(options, value, onchange) {
    const s = el("select", { onchange: (e) => onchange(e.target.value) });
    for (const o of options) {
      if (o.group) {
        const g = el("optgroup", { label: o.group });
        for (const x of o.options) g.append(el("option", { value: x.value, text: x.label, selected: String(x.value) === String(value) }));
        s.append(g);
      } else {
        s.append(el("option", { value: o.value, text: o.label, selected: String(o.value) === String(value) }));
      }
    }
    return s;
  }

  function fieldOptions() {
    const groups = [];
    for (const f of schema.fields) {
      let g = groups.find((x) => x.group === f.group);
      if (!g) groups.push((g = { group: f.group, options: [] }));
      g.options.push({ value: f.name, label: f.label });
    }
    return groups;
  }

  function newRule() {
    return { field: "city", op: "is", value: "" };
  }

  function defaultValue(type) {
    return { none: undefined, days: 30, month: new Date().getMonth() + 1, status: "subscribed",
      topic: schema.topics.length ? schema.topics[0].id : "", survey: { survey_id: "", question: 1, answer: "" } }[type] ?? "";
  }

  function opsFor(rule) {
    return schema.operators[fields[rule.field].kind];
  }

  function valueControl(rule, op, n) {
    const set = (v) => { rule.value = v; changed(false); };
    const type = op.value;
    if (type === "none") return null;
    if (type === "status") return labelled(`Rule ${n} status`, select(schema.statuses.map((s) => ({ value: s, label: s })), rule.value, set));
    if (type === "month") return labelled(`Rule ${n} month`, select(schema.months.map((m, i) => ({ value: i + 1, label: m })), rule.value, (v) => set(Number(v))));
    if (type === "topic") {
      if (!schema.topics.length) return el("span", { class: "muted", text: "no topics yet" });
      return labelled(`Rule ${n} topic`, select(schema.topics.map((t) => ({ value: t.id, label: t.name })), rule.value, (v) => set(Number(v))));
    }
    if (type === "survey" && schema.surveys.length) {
      const v = rule.value && typeof rule.value === "object" ? rule.value : (rule.value = defaultValue("survey"));
      let survey = schema.surveys.find((x) => String(x.id) === String(v.survey_id));
      if (!survey) { survey = schema.surveys[0]; v.survey_id = survey.id; v.question = 1; }
      const question = survey.questions.find((q) => q.number === Number(v.question)) || survey.questions[0];
      if (question) v.question = question.number;
      const listId = "seg-choices-" + (++uid);
      const answer = el("input", { value: v.answer || "", placeholder: "any answer", list: listId,
        oninput: (e) => { v.answer = e.target.value; changed(false); } });
      const choices = el("datalist", { id: listId });
      for (const c of (question ? question.choices : [])) choices.append(el("option", { value: c }));
      return el("span", { class: "seg-survey" },
        labelled(`Rule ${n} survey`, select(schema.surveys.map((x) => ({ value: x.id, label: x.name })), v.survey_id,
          (id) => { v.survey_id = Number(id); v.question = 1; changed(true, `Rule ${n} survey`); })),
        labelled(`Rule ${n} question`, select(survey.questions.map((q) => ({ value: q.number, label: `${q.number}. ${q.prompt}` })),
          v.question, (q) => { v.question = Number(q); changed(true, `Rule ${n} question`); })),
        labelled(`Rule ${n} answer`, answer), choices);
    }
    if (type === "survey") {
      const v = rule.value && typeof rule.value === "object" ? rule.value : (rule.value = defaultValue("survey"));
      const part = (key, label, attrs) => labelled(`Rule ${n} ${label}`, el("input", Object.assign({ value: v[key] ?? "", placeholder: label,
        oninput: (e) => { v[key] = e.target.value; changed(false); } }, attrs)));
      return el("span", { class: "seg-survey" }, part("survey_id", "survey number", { type: "number", min: 1 }),
        part("question", "question number", { type: "number", min: 1 }), part("answer", "answer", {}));
    }
    const attrs = { value: rule.value ?? "", oninput: (e) => set(e.target.value) };
    if (type === "days") Object.assign(attrs, { type: "number", min: 1, max: 36500, inputmode: "numeric" });
    else if (type === "date") attrs.type = "date";
    else if (type === "number") Object.assign(attrs, { inputmode: "decimal" });
    else if (rule.field === "interest" && schema.interests.length) attrs.list = "seg-interests";
    else if (rule.field === "tier" && (schema.tiers || []).length) attrs.list = "seg-tiers";
    const input = el("input", attrs);
    const wrapped = labelled(`Rule ${n} value`, input);
    if (type === "days") wrapped.append(el("span", { class: "muted", text: " days" }));
    return wrapped;
  }

  function renderRule(rule, parent, index, path) {
    if (!fields[rule.field]) rule.field = "city";
    const ops = opsFor(rule);
    let op = ops.find((o) => o.name === rule.op);
    if (!op) { op = ops[0]; rule.op = op.name; }
    const n = path.join(".");
    const row = el("li", { class: "seg-rule" });
    row.append(labelled(`Rule ${n} field`, select(fieldOptions(), rule.field, (v) => {
      rule.field = v;
      const first = opsFor(rule)[0];
      rule.op = first.name;
      rule.value = defaultValue(first.value);
      if (fields[v].kind === "attribute") rule.key = rule.key || "";
      else delete rule.key;
      changed(true, `Rule ${n} field`);
    })));
    if (fields[rule.field].kind === "attribute") {
      row.append(labelled(`Rule ${n} attribute name`, el("input", { value: rule.key || "", placeholder: "attribute name",
        class: "seg-key", oninput: (e) => { rule.key = e.target.value; changed(false); } })));
    }
    row.append(labelled(`Rule ${n} condition`, select(ops.map((o) => ({ value: o.name, label: o.label })), rule.op, (v) => {
      const before = op.value;
      rule.op = v;
      const now = ops.find((o) => o.name === v).value;
      if (now !== before) rule.value = defaultValue(now);
      if (now === "none") delete rule.value;
      changed(true, `Rule ${n} condition`);
    })));
    row.append(valueControl(rule, op, n));
    row.append(el("button", { type: "button", class: "secondary seg-remove", "aria-label": `Remove rule ${n}`, text: "×",
      onclick: () => { parent.rules.splice(index, 1); changed(true); } }));
    return row;
  }

  function renderGroup(group, parent, index, depth, path) {
    const name = path.length ? `group ${path.join(".")}` : "the segment";
    const box = el("div", { class: "seg-group" + (depth > 1 ? " nested" : "") });
    const head = el("div", { class: "seg-head" });
    head.append(el("span", { text: depth > 1 ? "Matching " : "Contacts matching " }));
    head.append(labelled(`How ${name} combines its rules`, select([{ value: "all", label: "all" }, { value: "any", label: "any" }],
      group.match, (v) => { group.match = v; changed(false); })));
    head.append(el("span", { text: " of these rules:" }));
    if (parent) {
      head.append(el("button", { type: "button", class: "secondary seg-remove", "aria-label": `Remove ${name}`, text: "Remove group",
        onclick: () => { parent.rules.splice(index, 1); changed(true); } }));
    }
    box.append(head);
    const list = el("ul", { class: "seg-rules" });
    group.rules.forEach((item, i) => {
      const p = path.concat(i + 1);
      if (item && Array.isArray(item.rules)) list.append(el("li", {}, renderGroup(item, group, i, depth + 1, p)));
      else list.append(renderRule(item, group, i, p));
    });
    box.append(list);
    const actions = el("div", { class: "seg-actions" });
    actions.append(el("button", { type: "button", class: "secondary", text: "+ Rule",
      onclick: () => { group.rules.push(newRule()); changed(true, `Rule ${path.concat(group.rules.length).join(".")} field`); } }));
    if (depth < MAX_DEPTH) {
      actions.append(el("button", { type: "button", class: "secondary", text: "+ Group (any of)",
        onclick: () => { group.rules.push({ match: "any", rules: [newRule()] }); changed(true); } }));
    }
    box.append(actions);
    return box;
  }

  function render(focusLabel) {
    root.replaceChildren(renderGroup(model, null, 0, 1, []));
    if (schema.interests.length) {
      const dl = el("datalist", { id: "seg-interests" });
      for (const i of schema.interests) dl.append(el("option", { value: i }));
      root.append(dl);
    }
    if ((schema.tiers || []).length) {
      const dl = el("datalist", { id: "seg-tiers" });
      for (const t of schema.tiers) dl.append(el("option", { value: t }));
      root.append(dl);
    }
    if (focusLabel) {
      const label = [...root.querySelectorAll("label")].find((l) => l.textContent === focusLabel);
      const target = label && document.getElementById(label.htmlFor);
      if (target) target.focus();
    }
  }

  let timer = null;
  let seq = 0;
  function changed(structural, focusLabel) {
    textarea.value = JSON.stringify(model, null, 1);
    if (structural) render(focusLabel);
    clearTimeout(timer);
    timer = setTimeout(refreshCount, 350);
  }

  async function refreshCount() {
    const mine = ++seq;
    countEl.textContent = "Counting…";
    countEl.classList.remove("error");
    try {
      const r = await fetch(root.dataset.countUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ definition: model }),
      });
      const data = await r.json();
      if (mine !== seq) return;   // a newer request is under way
      sampleEl.replaceChildren();
      if (!r.ok) {
        countEl.textContent = data.error || "This segment cannot be counted.";
        countEl.classList.add("error");
        return;
      }
      if (data.exact === false) {
        countEl.textContent = `About ${data.count.toLocaleString()} contacts match (estimated from a sample of ` +
          `${data.sampled.toLocaleString()}; the saved segment's exact count is on the Segments page): ${data.summary}`;
      } else {
        countEl.textContent = `${data.count.toLocaleString()} ${data.count === 1 ? "contact matches" : "contacts match"} now: ${data.summary}`;
      }
      for (const c of data.sample) {
        sampleEl.append(el("li", {}, el("a", { href: c.url, text: c.email }), c.name ? ` (${c.name})` : ""));
      }
    } catch (e) {
      if (mine === seq) countEl.textContent = "Could not reach the server to count.";
    }
  }

  textarea.addEventListener("change", () => {
    const parsed = parse(textarea.value);
    if (parsed) { model = parsed; render(); refreshCount(); }
  });
  render();
  refreshCount();
})();
