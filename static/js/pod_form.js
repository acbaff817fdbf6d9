// The "Create custom pod" form's prices follow the choices before launch: each cloud type's price
// for the chosen GPU, count, region and spot, and the estimate per hour and per day (GPU + storage).
// The figures come from the stored offers the page carries (#pod-prices), as the server computed the
// first render (pages/pod_form.py): the cheapest offer with capacity, else the cheapest, marked full.
(function () {
  "use strict";
  var form = document.getElementById("pod-form");
  var data = document.getElementById("pod-prices");
  if (!form || !data) return;
  var prices = JSON.parse(data.textContent);
  var usd = window.gpucloudDollars;
  function value(name) {
    var field = form.elements[name];
    if (!field) return "";
    if (field.type === "checkbox") return field.checked;
    return field.value;
  }
  function region() {
    var volume = prices.volumes[value("volume_id")];
    return value("storage") === "existing" && volume ? volume.region : value("region");
  }
  function cheapest(tier) {
    var found = prices.rows.filter(function (r) {
      return r.gpu === value("gpu_type") && String(r.count) === value("gpu_count") && r.region === region() &&
        r.spot === value("spot") && (tier === "any" || r.tier === tier);
    });
    return found.filter(function (r) { return r.available > 0; })[0] || found[0] || null;
  }
  function storage() {
    var size = value("volume_size"), volume = prices.volumes[value("volume_id")];
    // At the running price (a volume bills less while a pod runs on it): the estimate is of the pod running.
    if (value("storage") === "new" && /^\d+$/.test(size)) return Number(size) * prices.running_gb_hour_micros;
    if (value("storage") === "existing" && volume) return volume.hour;
    return 0;
  }
  function update() {
    form.querySelectorAll(".tier-price").forEach(function (el) {
      var offer = cheapest(el.dataset.tier);
      el.textContent = offer ? usd(offer.price) + "/hr" + (offer.available > 0 ? "" : " · no capacity now") : "not offered here";
    });
    var out = document.getElementById("pod-estimate"), offer = cheapest(value("cloud_type")), disk = storage();
    out.textContent = "";
    if (!offer) {
      out.append("No estimate: nothing is offered on these terms; choose another GPU, count, region, cloud type or spot.");
      return;
    }
    var hour = offer.price + disk, strong = document.createElement("strong");
    strong.textContent = usd(hour) + "/hr";
    out.append("Estimated cost: ", strong, " (" + usd(hour * 24) + "/day)");
    if (disk) out.append(": GPU " + usd(offer.price) + "/hr + storage " + usd(disk) + "/hr");
    if (offer.available <= 0) out.append(". No capacity there right now.");
  }
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  document.addEventListener("DOMContentLoaded", update);
})();
