// cardcore PIN widget. Served by cardcore (compiled in), no dependencies.
// Encrypts the PIN in this browser with WebCrypto RSA-OAEP (SHA-256) under
// the tenant's transport key, posts it to cardcore, and tells the embedding
// page only {type: "cardcore.pin", ok, pin_status, code?}, sent to the
// session's origin alone. The PIN never leaves this frame in clear.
(function () {
  "use strict";
  var form = document.getElementById("pin-form");
  if (!form) { return; }
  var d = form.dataset;
  var statusEl = document.getElementById("pin-status");
  var button = form.querySelector("button[type=submit]");

  function bytesFromBase64(b64) {
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  function base64FromBytes(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin);
  }
  var keyPromise = window.crypto.subtle.importKey(
    "spki", bytesFromBase64(d.key), { name: "RSA-OAEP", hash: "SHA-256" }, false, ["encrypt"]);
  function encrypt(pin) {
    return keyPromise
      .then(function (key) {
        return window.crypto.subtle.encrypt({ name: "RSA-OAEP" }, key, new TextEncoder().encode(pin));
      })
      .then(base64FromBytes);
  }
  function tell(ok, pinStatus, code) {
    if (window.parent === window) { return; }
    var msg = { type: "cardcore.pin", ok: ok, pin_status: pinStatus };
    if (code) { msg.code = code; }
    window.parent.postMessage(msg, d.origin);
  }
  function show(text, kind) {
    statusEl.textContent = text;
    statusEl.className = "msg " + (kind || "");
  }
  function value(id) {
    var el = document.getElementById(id);
    return el ? el.value.trim() : null;
  }
  function clearAll() {
    var inputs = form.querySelectorAll("input");
    for (var i = 0; i < inputs.length; i++) { inputs[i].value = ""; }
  }
  var messages = {
    pin_incorrect: "That PIN is not right.",
    pin_blocked: "Your PIN is blocked after too many wrong tries. Contact your card issuer.",
    weak_pin: "That PIN is too easy to guess. Choose another.",
    pin_policy_violation: "That PIN does not meet the rules. Choose another.",
    otp_invalid: "The code is not right or has expired.",
    otp_locked: "Too many wrong codes. Try again later.",
    pin_session_gone: "This session has expired. Please start again.",
    rate_limited: "Too many tries. Wait a minute and try again."
  };

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var pin = value("pin");
    var repeat = value("pin_repeat");
    var old = value("old_pin");
    var otp = value("otp");
    var digits = /^[0-9]{4,12}$/;
    if (!digits.test(pin || "") || (old !== null && !digits.test(old))) {
      show("A PIN is 4 to 12 digits.", "err");
      return;
    }
    if (repeat !== null && repeat !== pin) {
      show("The two PINs are not the same.", "err");
      return;
    }
    if (otp !== null && !/^[0-9]{6}$/.test(otp)) {
      show("The code is 6 digits.", "err");
      return;
    }
    button.disabled = true;
    show("Sending…", "");
    var purpose = d.purpose;
    var jobs = purpose === "change" ? [encrypt(old), encrypt(pin)] : [encrypt(pin)];
    Promise.all(jobs)
      .then(function (ct) {
        var body = { session_token: d.session, encrypted_pin: ct[0], key_id: d.keyId };
        if (purpose === "change") {
          body.encrypted_new_pin = ct[1];
          body.otp = otp;
          body.trace_number = d.trace;
        }
        clearAll();
        return fetch("/widget/pin", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          credentials: "omit",
          cache: "no-store"
        });
      })
      .then(function (res) { return res.json(); })
      .then(function (out) {
        if (out.ok) {
          show(purpose === "verify" ? "PIN is correct." : "Your PIN is set.", "ok");
          form.classList.add("done");
        } else {
          var text = messages[out.code] || "That did not work (" + (out.code || "error") + ").";
          if (out.remaining_attempts !== undefined && out.code === "pin_incorrect") {
            text += " Tries left: " + out.remaining_attempts + ".";
          }
          if (!out.session_open && out.code !== "pin_session_gone") {
            text += " Please start again.";
          }
          show(text, "err");
          // Only a session given back (the input alone was refused) takes another try.
          button.disabled = !out.session_open;
        }
        tell(!!out.ok, out.pin_status || null, out.ok ? undefined : out.code);
      })
      .catch(function () {
        clearAll();
        button.disabled = false;
        show("Could not reach your card issuer. Try again.", "err");
        tell(false, null, "network_error");
      });
  });
})();
