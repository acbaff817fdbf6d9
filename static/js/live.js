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
      if (window.gpucloudTicker) window.gpucloudTicker(message);
    };
    socket.onclose = function (event) {
      if (event.code === 4401) return;  // signed out: nothing to follow
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();

// Running cost: from the server's snapshot (cost at as-of, current hourly rate), one tick a second.
// Pushes correct the snapshot whenever the rate changes (a replica starts or stops).
(function () {
  "use strict";
  function show(ticker) {
    var cost = Number(ticker.dataset.costMicros);
    var rate = Number(ticker.dataset.rateMicros);
    var elapsedHours = Math.max(0, Date.now() - Number(ticker.dataset.asOf)) / 3600000;
    var dollars = (cost + rate * elapsedHours) / 1e6;
    ticker.textContent = "$" + dollars.toFixed(rate === 0 ? 2 : rate < 3600000 ? 6 : 4);
  }
  function tick() { document.querySelectorAll(".ticker").forEach(show); }
  window.gpucloudTicker = function (message) {
    var ticker = document.getElementById("cost-" + message.deployment_id);
    if (!ticker || message.cost_micros === undefined) return;
    ticker.dataset.costMicros = message.cost_micros;
    ticker.dataset.rateMicros = message.rate_micros;
    ticker.dataset.asOf = message.as_of_ms;
    show(ticker);
  };
  if (document.querySelector(".ticker")) { tick(); setInterval(tick, 1000); }
  else document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector(".ticker")) { tick(); setInterval(tick, 1000); }
  });
})();
