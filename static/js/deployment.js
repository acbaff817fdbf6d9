// The deployment page: Plotly charts of the last 24 hours (data from the page's json_script) and the
// replicas' logs followed over a websocket (deployments/consumers.py DeploymentLogsConsumer).
(function () {
  "use strict";
  var MAX_LOG_LINES = 2000;

  function charts() {
    var source = document.getElementById("chart-data");
    if (!source || !window.Plotly) return;
    var data = JSON.parse(source.textContent);
    // The page's own colours (light or dark scheme), so axes and legends stay readable in both.
    var css = getComputedStyle(document.documentElement);
    function colour(name) { return css.getPropertyValue(name).trim(); }
    var axis = { gridcolor: colour("--line"), linecolor: colour("--line"), zerolinecolor: colour("--line") };
    var layout = {
      margin: { l: 48, r: 12, t: 8, b: 36 }, height: 220, showlegend: true,
      legend: { orientation: "h", y: -0.25 }, font: { color: colour("--fg") },
      xaxis: Object.assign({ type: "date" }, axis), yaxis: Object.assign({ rangemode: "tozero" }, axis),
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    };
    var config = { displayModeBar: false, responsive: true };
    var total = data.requests.reduce(function (sum, n) { return sum + n; }, 0);
    if (total === 0) {  // an empty chart says so instead of showing bare axes
      layout.annotations = [{ text: "No requests in the last 24 hours", xref: "paper", yref: "paper",
                              x: 0.5, y: 0.5, showarrow: false, font: { size: 14 } }];
    }
    Plotly.newPlot("chart-requests", [
      { x: data.hours, y: data.requests, type: "bar", name: "requests" },
      // hatched as well as coloured: failures stay visible to people who do not see the colours
      { x: data.hours, y: data.errors, type: "bar", name: "failed", marker: { pattern: { shape: "/" } } },
    ], Object.assign({ barmode: "overlay" }, layout), config);
    Plotly.newPlot("chart-latency", [
      { x: data.hours, y: data.latency_avg, type: "scatter", mode: "lines+markers", name: "average", connectgaps: false },
      { x: data.hours, y: data.latency_p95, type: "scatter", mode: "lines+markers", name: "p95", line: { dash: "dot" } },
    ], layout, config);
  }

  function logs() {
    var box = document.getElementById("logs");
    if (!box || !("WebSocket" in window)) return;
    var delay = 1000, started = false;
    function append(message) {
      if (!started) { box.textContent = ""; started = true; }
      var atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      var text = message.lines.map(function (line) { return message.instance_id + " | " + line; }).join("\n") + "\n";
      box.appendChild(document.createTextNode(text));
      while (box.childNodes.length > MAX_LOG_LINES) box.removeChild(box.firstChild);
      if (atBottom) box.scrollTop = box.scrollHeight;
    }
    function connect() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var socket = new WebSocket(scheme + location.host + box.dataset.socket);
      socket.onopen = function () {
        delay = 1000;
        if (!started) box.textContent = "Waiting for log lines…";
      };
      socket.onmessage = function (event) { append(JSON.parse(event.data)); };
      socket.onclose = function (event) {
        if (event.code === 4401 || event.code === 4404) { box.textContent = "Logs are not available to this session."; return; }
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }
    connect();
  }

  document.addEventListener("DOMContentLoaded", function () { charts(); logs(); });
})();
