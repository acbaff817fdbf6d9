// The model page's estimate follows the chosen GPU and replica count before launch (the server
// renders the first one; without JavaScript it shows the preselected choice). A replica count the
// server would refuse gets no figure, only the allowed range.
(function () {
  "use strict";
  function usd(micros) {  // gpucloud/core/money.py's rule: exact, trailing zeros dropped down to cents
    var frac = String(micros % 1000000).padStart(6, "0").replace(/0+$/, "");
    while (frac.length < 2) frac += "0";
    return "$" + Math.floor(micros / 1000000) + "." + frac;
  }
  function update() {
    var out = document.getElementById("deploy-estimate");
    var chosen = document.querySelector("input[name=placement]:checked");
    var field = document.getElementById("deploy-replicas");
    if (!out || !chosen || !field) return;
    var most = parseInt(field.max, 10), text = field.value.trim(), replicas = Number(text);
    out.innerHTML = "";
    if (!/^\d+$/.test(text) || replicas < 1 || replicas > most) {
      out.append("No estimate until a GPU and between 1 and " + most + " replicas are chosen.");
      return;
    }
    var hour = Number(chosen.dataset.hourMicros) * replicas;
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
