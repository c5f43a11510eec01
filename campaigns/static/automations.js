// Automation form: show only the fields of the chosen trigger (without JavaScript every field stays visible).
(function () {
  "use strict";
  function update(form) {
    var checked = form.querySelector('input[name="trigger"]:checked');
    var trigger = checked ? checked.value : "";
    form.querySelectorAll("[data-trigger]").forEach(function (el) {
      el.hidden = el.getAttribute("data-trigger").split(" ").indexOf(trigger) === -1;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form.automation-form");
    if (!form) { return; }
    form.querySelectorAll('input[name="trigger"]').forEach(function (input) {
      input.addEventListener("change", function () { update(form); });
    });
    update(form);
  });
})();
