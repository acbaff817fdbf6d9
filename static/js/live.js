// Live updates for the pages (deployments/consumers.py): each pushed status badge replaces the one
// on the page with the same id; running costs and the balance restart from each pushed snapshot.
// The pages work without it; it reconnects with backoff.
(function () {
  "use strict";
  if (!("WebSocket" in window)) return;
  var delay = 1000;
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    // The deployment page asks for its replicas and events in the snapshot sent on connecting.
    var focus = document.querySelector("[data-live-focus]");
    var query = focus ? "?focus=" + encodeURIComponent(focus.dataset.liveFocus) : "";
    var socket = new WebSocket(scheme + location.host + "/ws/org/" + query);
    socket.onopen = function () { delay = 1000; };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "deployment.changed") {
        var badge = document.getElementById("status-" + message.deployment_id);
        // A deployment this page does not show yet, or one whose status moved: lists and counts
        // built from statuses re-read themselves (hx-trigger="deployment-changed from:body").
        var ended = message.status === "stopped" || message.status === "failed";
        var moved = badge ? !badge.classList.contains("status-" + message.status) : !ended;
        if (badge) badge.outerHTML = message.html;
        if (moved) document.body.dispatchEvent(new CustomEvent("deployment-changed", { detail: message }));
        var timeline = document.getElementById("timeline-" + message.deployment_id);
        if (timeline && message.timeline_html) timeline.outerHTML = message.timeline_html;
        window.gpucloudTicker.deployment(message);
      }
      if (message.balance) window.gpucloudTicker.balance(message.balance);
      var activity = document.getElementById("activity");
      if (activity && message.activity_html) activity.outerHTML = message.activity_html;
    };
    socket.onclose = function (event) {
      if (event.code === 4401) return;  // signed out: nothing to follow
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  document.addEventListener("DOMContentLoaded", connect);
})();

// Running costs rise and the balance falls, one tick a second, from the server's snapshot: an amount at
// as-of and the running sessions, each [hourly rate, the moment its minimum is used up]. The amount
// already counts each session's 60-second minimum, so a session adds nothing until that moment, then
// its whole seconds as metering bills them (billing/metering.py): the figure never runs ahead of the
// bill. Pushes replace the snapshot when something changes.
(function () {
  "use strict";
  function elapsedHours(el) { return Math.max(0, Date.now() - Number(el.dataset.asOf)) / 3600000; }
  // gpucloud/core/money.py's one rule, as the server's usd filter: exact to the micro-dollar, trailing
  // zeros dropped down to cents ($5.00, $4.998501, $0.000833); the estimate is rounded to a micro-dollar.
  function dollars(micros) {
    var m = Math.round(micros), abs = Math.abs(m);
    var frac = String(abs % 1000000).padStart(6, "0").replace(/0+$/, "");
    while (frac.length < 2) frac += "0";
    return (m < 0 ? "-$" : "$") + Math.floor(abs / 1000000) + "." + frac;
  }
  function secondsPast(from, at) { return Math.max(0, Math.floor((at - from) / 1000)); }
  // What the sessions have run up since as-of; each session's share rounded down, as metering rounds
  // the whole session's cost down (so the sum of the shares is never more than it bills).
  function sinceSnapshot(el) {
    var asOf = Number(el.dataset.asOf), now = Date.now();
    return JSON.parse(el.dataset.sessions || "[]").reduce(function (sum, session) {
      var seconds = secondsPast(session[1], now) - secondsPast(session[1], asOf);
      return sum + Math.max(0, Math.floor(session[0] * seconds / 3600));
    }, 0);
  }
  function showCost(el) { el.textContent = dollars(Number(el.dataset.costMicros) + sinceSnapshot(el)); }
  function showBalance(el) { el.textContent = dollars(Number(el.dataset.availableMicros) - sinceSnapshot(el)); }
  function durationText(seconds) {  // as gpucloud/durations.py: 2 h 05 min, 3 min 20 s, 45 s
    var s = Math.max(0, seconds), hours = Math.floor(s / 3600), minutes = Math.floor((s % 3600) / 60), secs = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (hours) return hours + " h " + two(minutes) + " min";
    return minutes ? minutes + " min " + two(secs) + " s" : secs + " s";
  }
  function showRuntime(el) {
    var badge = document.getElementById("status-" + el.dataset.deployment);
    if (badge && /status-(stopped|failed)/.test(badge.className)) return;  // ended: the figure stands
    // Time with a replica billed: the server's figure at as-of, counting on while one runs.
    el.textContent = durationText(Number(el.dataset.runtimeS) + Math.floor(elapsedHours(el) * 3600));
  }
  function tick() {
    document.querySelectorAll(".ticker").forEach(showCost);
    document.querySelectorAll(".balance").forEach(showBalance);
    document.querySelectorAll(".runtime").forEach(showRuntime);
  }
  window.gpucloudDollars = dollars;  // for the pages' own scripts (static/js/pod_form.js)
  window.gpucloudTicker = {
    deployment: function (message) {
      var el = document.getElementById("cost-" + message.deployment_id);
      if (!el || message.cost_micros === undefined) return;
      el.dataset.costMicros = message.cost_micros;
      el.dataset.rateMicros = message.rate_micros;
      el.dataset.sessions = JSON.stringify(message.sessions || []);
      el.dataset.asOf = message.as_of_ms;
      showCost(el);
    },
    balance: function (snapshot) {
      document.querySelectorAll(".balance").forEach(function (el) {
        el.dataset.availableMicros = snapshot.available_micros;
        el.dataset.rateMicros = snapshot.rate_micros;
        el.dataset.sessions = JSON.stringify(snapshot.sessions || []);
        el.dataset.asOf = snapshot.as_of_ms;
        showBalance(el);
      });
    },
  };
  document.addEventListener("DOMContentLoaded", function () { tick(); setInterval(tick, 1000); });
})();

// Copy buttons: <button data-copy="#id"> copies that element's text (the connection values, snippets).
document.addEventListener("click", function (event) {
  "use strict";
  var button = event.target.closest && event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.querySelector(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(function () {
    var label = button.textContent;
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = label; }, 1500);
  });
});
// Copy buttons are hidden until the clipboard is there to use.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  if (!navigator.clipboard) return;
  document.querySelectorAll("button.copy[hidden]").forEach(function (b) { b.hidden = false; });
});
