// Shared by the queue and case pages: no lost or double clicks, and due clocks that count down.
(function () {
  "use strict";

  // A guarded form disables its buttons while it submits, so a second click cannot send it twice.
  // (Bubble phase: a page script that cancels the submit runs first and leaves the buttons alone.)
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !form.classList || !form.classList.contains("guarded")) return;
    if (form.getAttribute("data-submitting") === "1") { event.preventDefault(); return; }
    form.setAttribute("data-submitting", "1");
    Array.prototype.forEach.call(form.querySelectorAll("button, input[type=submit]"), function (button) {
      button.disabled = true;
      button.setAttribute("data-label", button.textContent);
      button.textContent = "Working…";
    });
    // Buttons of forms outside the <form> element (form= attribute) too.
    if (form.id) {
      Array.prototype.forEach.call(document.querySelectorAll('button[form="' + form.id + '"]'), function (b) { b.disabled = true; });
    }
  });

  // Coming back through the browser's history must not leave buttons disabled.
  window.addEventListener("pageshow", function () {
    Array.prototype.forEach.call(document.querySelectorAll("form.guarded[data-submitting]"), function (form) {
      form.removeAttribute("data-submitting");
      Array.prototype.forEach.call(form.querySelectorAll("button"), function (button) {
        button.disabled = false;
        if (button.getAttribute("data-label")) button.textContent = button.getAttribute("data-label");
      });
    });
  });

  function format(ms) {
    var negative = ms < 0;
    var s = Math.floor(Math.abs(ms) / 1000);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var text = d ? d + "d " + h + "h" : h ? h + "h " + (m < 10 ? "0" : "") + m + "m" : m + "m " + (sec < 10 ? "0" : "") + sec + "s";
    return negative ? "overdue " + text : text + " left";
  }

  function tick() {
    var now = Date.now();
    Array.prototype.forEach.call(document.querySelectorAll("time.due-clock[data-due]"), function (clock) {
      var due = Date.parse(clock.getAttribute("data-due"));
      if (isNaN(due)) return;
      if (clock.getAttribute("data-paused") === "1") { clock.textContent = "paused"; return; }
      var left = due - now;
      clock.textContent = format(left);
      clock.classList.toggle("overdue", left < 0);
      var row = clock.closest("tr");
      if (left < 0 && row && !row.classList.contains("sla-breached")) {
        row.className = row.className.replace(/\bsla-\w+/, "sla-breached");
        var badge = row.querySelector(".sla");
        if (badge) { badge.className = "badge sla sla-badge-breached"; badge.textContent = "Breached"; }
      }
    });
  }

  window.PortalClocks = { tick: tick };
  tick();
  setInterval(tick, 1000);
})();
