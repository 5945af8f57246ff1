// Live updates: one socket per tab. Hints carry a database sequence number; a page
// that sees a gap (or reconnects) asks the server for what it missed, in order.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-live-url");
  if (!url || !window.WebSocket) return;
  var dot = document.getElementById("live-status");
  var listeners = [];
  var socket = null;
  var retry = 500;
  var closedForGood = false;

  function setState(state, title) {
    if (!dot) return;
    dot.setAttribute("data-state", state);
    dot.title = "Live updates: " + title;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + url);
    socket.onopen = function () {
      retry = 500;
      setState("open", "connected");
      listeners.forEach(function (fn) { fn({ type: "reconnected" }); });
    };
    socket.onmessage = function (message) {
      var data;
      try { data = JSON.parse(message.data); } catch (e) { return; }
      if (data.type === "revoked") {
        closedForGood = true;
        setState("closed", "stopped (" + data.reason + ")");
        listeners.forEach(function (fn) { fn(data); }); // pages may say so; they ignore types they do not know
        return;
      }
      listeners.forEach(function (fn) { fn(data); });
    };
    socket.onclose = function (event) {
      if (closedForGood || event.code === 4401 || event.code === 4403) {
        setState("closed", "stopped; reload the page to reconnect");
        return;
      }
      setState("connecting", "reconnecting…");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }

  window.PortalLive = {
    subscribe: function (fn) { listeners.push(fn); },
  };
  connect();
})();
