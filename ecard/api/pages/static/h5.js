// The holder's code: a countdown, and the next code fetched before `refresh_at` (the server
// says in how many seconds, so the phone's own clock does not matter). No code of ours inline:
// everything the script needs is in the page's data- attributes.
(function () {
  "use strict";
  var box = document.getElementById("qr");
  if (!box) return;
  var img = document.getElementById("qr-image");
  var countdown = document.getElementById("countdown");
  var error = document.getElementById("code-error");
  var refreshAt, expiresAt, timer;

  function schedule(refreshIn, expiresIn) {
    var now = Date.now();
    refreshAt = now + refreshIn * 1000;
    expiresAt = now + expiresIn * 1000;
  }

  function tick() {
    var now = Date.now();
    var left = Math.max(0, Math.ceil((refreshAt - now) / 1000));
    countdown.textContent = String(left);
    if (now >= expiresAt) box.classList.add("stale");
    if (now >= refreshAt) next();
  }

  function next() {
    clearInterval(timer);
    var body = new URLSearchParams();
    body.set("dependant", box.dataset.dependant || "");
    fetch(box.dataset.url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": box.dataset.csrf, "Accept": "application/json" },
      body: body
    }).then(function (resp) {
      return resp.json().then(function (data) { return { ok: resp.ok, data: data }; });
    }).then(function (r) {
      if (!r.ok) {
        // signed out, or the payment window closed: the page itself says what to do next
        if (r.data.signed_out || r.data.code === "ecard.password_required") { window.location.reload(); return; }
        showError(r.data.error);
        return;
      }
      img.src = r.data.img;
      box.classList.remove("stale");
      error.hidden = true;
      schedule(r.data.refresh_in, r.data.expires_in);
      timer = setInterval(tick, 250);
    }).catch(function () {
      showError(box.dataset.expired);
      setTimeout(next, 5000); // the network came back? try again
    });
  }

  function showError(words) {
    error.textContent = words;
    error.hidden = false;
    box.classList.add("stale");
  }

  schedule(Number(box.dataset.refreshIn), Number(box.dataset.expiresIn));
  timer = setInterval(tick, 250);
})();
