// The scanner: codes from the camera (the browser's BarcodeDetector where it has one, the
// vendored jsQR otherwise) and from a USB scanner typing into the field, each sent to the server
// and its decision shown large. A code is judged once while it stays in view; one that leaves
// the view and comes back is judged again (and is then, rightly, a replay).
(function () {
  "use strict";
  var form = document.getElementById("scan-form");
  if (!form) return;
  var field = document.getElementById("payload");
  var decision = document.getElementById("decision");
  var video = document.getElementById("video");
  var canvas = document.getElementById("frame");
  var state = document.getElementById("camera-state");
  var lastSeen = "", lastSeenAt = 0, busy = false;
  var GONE_MS = 1200; // a code not seen for this long has left the view

  function render(d) {
    decision.className = "decision " + (d.accepted ? "ok" : "no");
    decision.textContent = "";
    var verdict = document.createElement("p");
    verdict.className = "verdict";
    verdict.textContent = d.error || d.words;
    decision.appendChild(verdict);
    if (d.by_proxy) {
      var proxy = document.createElement("p");
      proxy.className = "proxy-note";
      proxy.textContent = d.by_proxy_words;
      decision.appendChild(proxy);
    }
    var dl = document.createElement("dl");
    (d.fields || []).forEach(function (f) {
      var dt = document.createElement("dt"); dt.textContent = f.label;
      var dd = document.createElement("dd"); dd.textContent = f.value;
      dl.appendChild(dt); dl.appendChild(dd);
    });
    decision.appendChild(dl);
  }

  function judge(payload) {
    if (busy || !payload) return false;
    busy = true;
    var body = new URLSearchParams();
    body.set("payload", payload);
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": form.dataset.csrf, "Accept": "application/json" },
      body: body
    }).then(function (resp) { return resp.json(); })
      .then(function (d) {
        if (d.signed_out) { window.location.reload(); return; }
        render(d);
      })
      .catch(function () { render({ accepted: false, error: "?" }); })
      .then(function () { busy = false; });
    return true;
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    judge(field.value.trim());
    field.value = "";
    field.focus();
  });
  field.focus();

  function seen(payload) {
    var now = Date.now();
    if (!payload) return;
    // a code new to the view is judged (when a judgement is under way, it is seen again next frame)
    if ((payload !== lastSeen || now - lastSeenAt > GONE_MS) && !judge(payload)) return;
    lastSeen = payload;
    lastSeenAt = now;
  }

  function decoder() {
    if ("BarcodeDetector" in window) {
      try {
        var detector = new window.BarcodeDetector({ formats: ["qr_code"] });
        return function (source) {
          return detector.detect(source).then(function (found) { return found.length ? found[0].rawValue : ""; });
        };
      } catch (e) { /* this browser lists it without QR: fall back */ }
    }
    var ctx = canvas.getContext("2d", { willReadFrequently: true });
    return function (source) {
      var w = source.videoWidth, h = source.videoHeight;
      if (!w || !h) return Promise.resolve("");
      canvas.width = w; canvas.height = h;
      ctx.drawImage(source, 0, 0, w, h);
      var found = window.jsQR(ctx.getImageData(0, 0, w, h).data, w, h, { inversionAttempts: "dontInvert" });
      return Promise.resolve(found ? found.data : "");
    };
  }

  document.getElementById("start-camera").addEventListener("click", function () {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { state.textContent = form.dataset.noCamera; return; }
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (stream) {
      video.srcObject = stream;
      video.hidden = false;
      return video.play();
    }).then(function () {
      var read = decoder();
      (function loop() {
        read(video).then(seen).catch(function () {}).then(function () { setTimeout(loop, 150); });
      })();
    }).catch(function () { state.textContent = form.dataset.noCamera; });
  });
})();
