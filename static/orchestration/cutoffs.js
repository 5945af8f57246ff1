// Home page: refetch the carrier cutoff board every minute while the tab is visible (clocks move even when nothing
// else does), and at once when the tab comes back into view.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var board = document.querySelector(".cutoff-board[data-refresh-url]");
  if (!board) return;
  var url = board.getAttribute("data-refresh-url");

  function refresh() {
    if (document.hidden) return;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) { board.innerHTML = html; })
      .catch(function () { /* the next minute tries again */ });
  }

  setInterval(refresh, 60000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
});
