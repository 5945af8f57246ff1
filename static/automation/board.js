// Equipment board and a unit's page: on a live hint about equipment (or a reconnect), fetch the fragment again.
// Hints carry the database sequence; anything not newer than what the page shows is skipped.
(function () {
  "use strict";
  var root = document.getElementById("equipment-board");
  if (!root || !window.PortalLive) return;
  var url = root.getAttribute("data-fragment-url");
  var unit = root.getAttribute("data-equipment"); // set on one unit's page
  var shown = parseInt(root.getAttribute("data-seq") || "0", 10);
  var timer = null;
  var inFlight = false;
  var again = false;

  function refresh() {
    timer = null;
    if (inFlight) { again = true; return; }
    if (root.contains(document.activeElement) && document.activeElement.tagName === "INPUT") {
      timer = setTimeout(refresh, 2000); // someone is typing a reason: do not replace the form under them
      return;
    }
    inFlight = true;
    fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        root.innerHTML = html;
        var body = root.querySelector(".board-body");
        if (body) { shown = Math.max(shown, parseInt(body.getAttribute("data-seq") || "0", 10)); }
        root.classList.remove("flash-new"); void root.offsetWidth; root.classList.add("flash-new");
      })
      .catch(function () { /* the next hint or reconnect tries again */ })
      .then(function () {
        inFlight = false;
        if (again) { again = false; schedule(); }
      });
  }

  function schedule() {
    if (!timer) timer = setTimeout(refresh, 250); // coalesce bursts of hints into one fetch
  }

  window.PortalLive.subscribe(function (message) {
    if (message.type === "reconnected") { schedule(); return; }
    if (message.type !== "equipment") return;
    if (unit && message.equipment && message.equipment !== unit) return; // a unit's page: hints about others
    if (typeof message.seq === "number" && message.seq <= shown) return;
    schedule();
  });
})();
