// Small behaviours for the dashboard. Event delegation, so content swapped in by htmx works too.
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-http hosts have no Clipboard API: fall back to a selected, off-screen textarea.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var copied = document.execCommand("copy");
    document.body.removeChild(area);
    return copied ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    copyText(source.value !== undefined ? source.value : source.textContent.trim()).then(
      function () { button.textContent = "Copied"; },
      function () {
        if (source.select) source.select();
        button.textContent = "Press Ctrl+C";
      }
    ).then(function () {
      window.setTimeout(function () { button.textContent = label; }, 2000);
    });
  });

  // A masked secret (a password input) shown or hidden again by its button.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-reveal]");
    if (!button) return;
    var field = document.querySelector(button.getAttribute("data-reveal"));
    if (!field) return;
    var shown = field.type === "password";
    field.type = shown ? "text" : "password";
    button.textContent = shown ? "Hide" : "Reveal";
  });

  function updateCounter(field) {
    var counter = document.querySelector('[data-counter-for="' + field.id + '"]');
    if (!counter) return;
    var max = parseInt(counter.getAttribute("data-max") || field.getAttribute("maxlength"), 10);
    var length = field.value.length;
    counter.textContent = length + " / " + max;
    counter.classList.toggle("near-limit", length >= max * 0.9);
  }

  document.addEventListener("input", function (event) {
    if (event.target.id) updateCounter(event.target);
  });

  document.addEventListener("DOMContentLoaded", function () {
    // Controls that only work with JavaScript stay hidden without it (the page offers another way).
    document.querySelectorAll(".js-only[hidden]").forEach(function (element) {
      element.hidden = false;
    });
    document.querySelectorAll("[data-counter-for]").forEach(function (counter) {
      var field = document.getElementById(counter.getAttribute("data-counter-for"));
      if (field) updateCounter(field);
    });
  });
})();
