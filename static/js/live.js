// Live updates for the pages (deployments/consumers.py): each pushed status badge replaces the
// one on the page with the same id. The pages work without it; it reconnects with backoff.
(function () {
  "use strict";
  if (!("WebSocket" in window)) return;
  var delay = 1000;
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/org/");
    socket.onopen = function () { delay = 1000; };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type !== "deployment.changed") return;
      var badge = document.getElementById("status-" + message.deployment_id);
      if (badge) badge.outerHTML = message.html;
    };
    socket.onclose = function (event) {
      if (event.code === 4401) return;  // signed out: nothing to follow
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
