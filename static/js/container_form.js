// The "New container endpoint" form's prices follow the choices before launch: each cloud type's
// price per replica for the chosen GPU, count and region (any region: the cheapest), and the estimate
// for the replicas asked. The figures come from the stored on-demand offers the page carries
// (#ctr-prices), as the server computed the first render (pages/container_form.py): the cheapest
// offer with capacity, else the cheapest, marked full.
(function () {
  "use strict";
  var form = document.getElementById("container-form");
  var data = document.getElementById("ctr-prices");
  if (!form || !data) return;
  var prices = JSON.parse(data.textContent);
  var usd = window.gpucloudDollars;
  function value(name) {
    var field = form.elements[name];
    return field ? field.value : "";
  }
  function cheapest(tier) {
    var found = prices.rows.filter(function (r) {
      return r.gpu === value("gpu_type") && String(r.count) === value("gpu_count") &&
        (value("region") === "" || r.region === value("region")) && (tier === "any" || r.tier === tier);
    }).sort(function (a, b) { return a.price - b.price; });
    return found.filter(function (r) { return r.available > 0; })[0] || found[0] || null;
  }
  function update() {
    form.querySelectorAll(".tier-price").forEach(function (el) {
      var offer = cheapest(el.dataset.tier);
      el.textContent = offer ? usd(offer.price) + "/hr" + (offer.available > 0 ? "" : " · no capacity now") : "not offered here";
    });
    var out = document.getElementById("ctr-estimate"), offer = cheapest(value("cloud_type"));
    var replicas = /^\d+$/.test(value("replicas")) ? Number(value("replicas")) : 1;
    out.textContent = "";
    if (!offer) {
      out.append("No estimate: nothing is offered on these terms; choose another GPU, count, region or cloud type.");
      return;
    }
    var strong = document.createElement("strong");
    strong.textContent = usd(offer.price) + "/hr per replica";
    out.append("Estimated cost: ", strong);
    if (replicas > 1) out.append(", " + usd(offer.price * replicas) + "/hr for " + replicas);
    if (offer.available <= 0) out.append(". No capacity there right now.");
  }
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  document.addEventListener("DOMContentLoaded", update);
})();
