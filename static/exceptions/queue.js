// Queue page, live: hints {type: "queue_change", queue, seq, case_id} arrive over the portal socket.
// seq == last + 1: fetch that case's row and insert, move or remove it. A gap (seq > last + 1) or a
// reconnect: fetch /queues/<code>/changes?since=<last> and apply every change in order. Work runs
// one step at a time so rows never apply out of order.
(function () {
  "use strict";
  var root = document.getElementById("live-queue");
  if (!root) return;
  var code = root.getAttribute("data-queue");
  var last = parseInt(root.getAttribute("data-seq") || "0", 10);
  var changesUrl = root.getAttribute("data-changes-url");
  var rowsUrl = root.getAttribute("data-rows-url");
  var filterQuery = root.getAttribute("data-filter-query") || "";
  var firstPage = root.getAttribute("data-first-page") === "1";
  var hasNext = root.getAttribute("data-has-next") === "1";
  var body = document.getElementById("queue-rows");
  var empty = document.getElementById("queue-empty");
  var chain = Promise.resolve();
  var MAX_ROUNDS = 20;

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json", "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (response.status === 403) { throw new Error("forbidden"); }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      });
  }

  var retryTimer = null;
  function enqueue(step) {
    chain = chain.then(step).catch(function (error) {
      if (error && error.message === "forbidden") { location.reload(); return; } // lost the role: the server explains
      // Network or server trouble: what was not applied is fetched again by sequence shortly.
      if (!retryTimer) {
        retryTimer = setTimeout(function () { retryTimer = null; enqueue(function () { return catchUp(); }); }, 2000);
      }
    });
  }

  // Move `last` only once the rows are on the page, so a failed fetch is retried from the same place.
  function applyThrough(seq, ids) {
    return fetchRows(ids).then(function () {
      last = Math.max(last, seq);
      root.setAttribute("data-seq", String(last));
    });
  }

  function keyOf(row) { return row.getAttribute("data-sort-key") || ""; }

  function place(row) {
    var key = keyOf(row);
    var rows = body.querySelectorAll("tr[data-case]");
    if (!firstPage && rows.length && key < keyOf(rows[0])) return false; // belongs to an earlier page
    for (var i = 0; i < rows.length; i++) {
      if (keyOf(rows[i]) > key) { body.insertBefore(row, rows[i]); return true; }
    }
    if (hasNext && rows.length) return false; // belongs to a later page
    body.appendChild(row);
    return true;
  }

  function applyRows(data) {
    Object.keys(data.rows).forEach(function (id) {
      var existing = body.querySelector('tr[data-case="' + id + '"]');
      var html = data.rows[id];
      var checked = existing && existing.querySelector("input[type=checkbox]:checked");
      if (existing) existing.remove();
      if (!html) return;
      var holder = document.createElement("tbody");
      holder.innerHTML = html.trim();
      var row = holder.firstElementChild;
      if (!row) return;
      if (checked) { var box = row.querySelector("input[type=checkbox]"); if (box) box.checked = true; }
      if (place(row)) {
        row.classList.add("flash-new");
      }
    });
    var totals = document.querySelectorAll("#queue-total, .js-total");
    Array.prototype.forEach.call(totals, function (el) { el.textContent = data.total; });
    if (empty) empty.hidden = body.querySelector("tr[data-case]") !== null;
    if (window.PortalClocks) window.PortalClocks.tick();
    updateSelection();
  }

  function fetchRows(ids) {
    if (!ids.length) return Promise.resolve();
    var url = rowsUrl + "?ids=" + ids.join(",") + (filterQuery ? "&" + filterQuery : "");
    return getJSON(url).then(applyRows);
  }

  function catchUp(round) {
    round = round || 0;
    return getJSON(changesUrl + "?since=" + last).then(function (data) {
      var ids = [];
      var through = last;
      data.changes.forEach(function (change) {
        if (change.seq <= through) return;
        through = change.seq;
        if (ids.indexOf(change.case_id) === -1) ids.push(change.case_id);
      });
      return applyThrough(through, ids).then(function () {
        if (data.has_more && round < MAX_ROUNDS) return catchUp(round + 1);
        if (data.has_more) location.reload(); // far behind: a fresh page is cheaper than replaying
      });
    });
  }

  function onHint(message) {
    enqueue(function () {
      if (message.seq <= last) return; // already applied (a catch-up got it first)
      if (message.seq === last + 1 && message.case_id) return applyThrough(message.seq, [message.case_id]);
      return catchUp();
    });
  }

  function stopped(reason) {
    var note = document.getElementById("live-stopped");
    if (!note) return;
    note.textContent = "Live updates stopped (" + reason + "). This list no longer changes by itself: reload the page or sign in again.";
    note.hidden = false;
  }

  if (window.PortalLive) {
    window.PortalLive.subscribe(function (message) {
      if (message.type === "reconnected") { enqueue(function () { return catchUp(); }); return; }
      if (message.type === "revoked") { stopped(message.reason); return; }
      if (message.type === "queue_change" && message.queue === code && typeof message.seq === "number") onHint(message);
    });
  }

  // Selection for bulk actions.
  var bulkForm = document.getElementById("bulk-form");
  var selectAll = document.getElementById("select-all");
  var countEl = document.getElementById("selected-count");
  function updateSelection() {
    var n = body.querySelectorAll("input[type=checkbox]:checked").length;
    if (countEl) countEl.textContent = String(n);
    if (bulkForm) bulkForm.classList.toggle("has-selection", n > 0);
  }
  body.addEventListener("change", updateSelection);
  if (selectAll) {
    selectAll.addEventListener("change", function () {
      Array.prototype.forEach.call(body.querySelectorAll("input[type=checkbox]"), function (box) { box.checked = selectAll.checked; });
      updateSelection();
    });
  }
  var action = document.getElementById("bulk-action");
  var assignee = document.getElementById("bulk-assignee");
  var resolution = document.getElementById("bulk-resolution");
  function showBulkFields() {
    if (!action) return;
    var assigning = action.value === "assign";
    assignee.hidden = !assigning; assignee.required = assigning;
    resolution.hidden = assigning; resolution.required = !assigning;
  }
  if (action) { action.addEventListener("change", showBulkFields); showBulkFields(); }
  if (bulkForm) {
    bulkForm.addEventListener("submit", function (event) {
      if (!body.querySelector("input[type=checkbox]:checked")) {
        event.preventDefault();
        event.stopImmediatePropagation();
        alert("Tick the cases to act on first.");
      }
    }, true);
  }

  // Filters apply as soon as one changes.
  var filters = document.getElementById("queue-filters");
  if (filters) {
    filters.addEventListener("change", function (event) {
      if (event.target.tagName === "SELECT") filters.submit();
    });
  }
  updateSelection();
})();
