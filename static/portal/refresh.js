// Home panels that show clocks and counts (data-refresh-url): refetch every data-refresh-seconds (default 60) while the
// tab is visible, and at once when the tab comes back into view.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  document.querySelectorAll("[data-refresh-url]").forEach(function (panel) {
    var url = panel.getAttribute("data-refresh-url");
    var seconds = parseInt(panel.getAttribute("data-refresh-seconds") || "60", 10);

    function refresh() {
      if (document.hidden) return;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
        .then(function (html) { panel.innerHTML = html; })
        .catch(function () { /* the next round tries again */ });
    }

    setInterval(refresh, seconds * 1000);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
  });
});
