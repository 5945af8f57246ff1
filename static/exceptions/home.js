// Home and queue list: when a hint names one of the queues shown, refetch the counts (coalesced).
// The panel's script tag comes before the shared live.js in the page: start once every deferred script ran.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var root = document.querySelector(".queue-cards[data-summary-url]");
  if (!root || !window.PortalLive) return;
  var url = root.getAttribute("data-summary-url");
  var timer = null;

  function apply(data) {
    data.queues.forEach(function (summary) {
      var card = root.querySelector('.queue-card[data-queue="' + summary.code + '"]');
      if (!card) return;
      ["open", "breached", "at_risk", "unassigned"].forEach(function (field) {
        var el = card.querySelector('[data-field="' + field + '"]');
        if (el && el.textContent !== String(summary[field])) {
          el.textContent = summary[field];
          el.classList.remove("flash-new"); void el.offsetWidth; el.classList.add("flash-new");
        }
      });
      var breached = card.querySelector('[data-kpi="breached"]');
      if (breached) breached.classList.toggle("bad", summary.breached > 0);
      var atRisk = card.querySelector('[data-kpi="at_risk"]');
      if (atRisk) atRisk.classList.toggle("warn", summary.at_risk > 0);
      summary.ages.forEach(function (age) {
        var row = card.querySelector('[data-age="' + age.key + '"]');
        if (!row) return;
        row.querySelector(".age-fill").style.width = age.percent + "%";
        row.querySelector(".age-count").textContent = age.count;
      });
      card.setAttribute("data-seq", summary.last_seq);
    });
  }

  function refresh() {
    timer = null;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(apply)
      .catch(function () { /* the next hint or reconnect tries again */ });
  }

  window.PortalLive.subscribe(function (message) {
    if (message.type === "reconnected") { if (!timer) timer = setTimeout(refresh, 100); return; }
    if (message.type !== "queue_change") return;
    var card = root.querySelector('.queue-card[data-queue="' + message.queue + '"]');
    if (!card || message.seq <= parseInt(card.getAttribute("data-seq") || "0", 10)) return;
    if (!timer) timer = setTimeout(refresh, 150 + Math.random() * 350); // spread many open pages' requests
  });
});
