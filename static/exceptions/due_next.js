// Home page "due next": when a hint names one of the listed queues, fetch the list again (coalesced).
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var root = document.querySelector(".due-next[data-url]");
  if (!root || !window.PortalLive) return;
  var queues = (root.getAttribute("data-queues") || "").split(" ");
  var timer = null;

  function refresh() {
    timer = null;
    fetch(root.getAttribute("data-url"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        root.innerHTML = html;
        if (window.PortalClocks) window.PortalClocks.tick();
      })
      .catch(function () { /* the next hint or reconnect tries again */ });
  }

  window.PortalLive.subscribe(function (message) {
    if (message.type === "reconnected" || (message.type === "queue_change" && queues.indexOf(message.queue) >= 0)) {
      if (!timer) timer = setTimeout(refresh, 200 + Math.random() * 400); // spread many open pages' requests
    }
  });
});
