// Case page: show only the extra fields of the chosen resolution, and say so when someone else changes the case.
(function () {
  "use strict";
  var form = document.getElementById("resolve-form");
  if (form) {
    var show = function () {
      var chosen = form.querySelector("input[name=resolution]:checked");
      Array.prototype.forEach.call(form.querySelectorAll(".param[data-for]"), function (param) {
        param.hidden = !chosen || param.getAttribute("data-for") !== chosen.value;
      });
    };
    form.addEventListener("change", show);
    show();
  }
  var live = document.getElementById("live-case");
  var banner = document.getElementById("case-changed");
  if (!live || !banner || !window.PortalLive) return;
  var caseId = parseInt(live.getAttribute("data-case"), 10);
  window.PortalLive.subscribe(function (message) {
    if (message.type !== "queue_change" || message.case_id !== caseId) return;
    if (message.status === live.getAttribute("data-status") && message.kind === "updated") return;
    banner.hidden = false;
    banner.innerHTML = "";
    banner.appendChild(document.createTextNode("This case just changed (now " + String(message.status).replace(/_/g, " ") + "). "));
    var link = document.createElement("a");
    link.href = location.pathname;
    link.textContent = "Reload to see the latest";
    banner.appendChild(link);
  });
})();
