// The model page's estimate follows the chosen GPU and replica count before launch (the server
// renders the first one; without JavaScript it shows the preselected choice).
(function () {
  "use strict";
  function usd(micros) {
    return "$" + (micros / 1e6).toFixed(micros > 0 && micros < 10000 ? 6 : 2);
  }
  function update() {
    var out = document.getElementById("deploy-estimate");
    var chosen = document.querySelector("input[name=placement]:checked");
    var replicas = parseInt(document.getElementById("deploy-replicas").value, 10);
    if (!out || !chosen || !(replicas > 0)) return;
    var hour = Number(chosen.dataset.hourMicros) * replicas;
    out.innerHTML = "";
    out.append("Estimated cost: ");
    var strong = document.createElement("strong");
    strong.textContent = usd(hour) + "/hr";
    out.append(strong, " (" + usd(hour * 24) + "/day) for " + replicas + " replica" + (replicas === 1 ? "" : "s") + " while running.");
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[name=placement], #deploy-replicas").forEach(function (el) {
      el.addEventListener("input", update);
      el.addEventListener("change", update);
    });
  });
})();
