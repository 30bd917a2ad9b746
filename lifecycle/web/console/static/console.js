// lifecycle console: the live parts. An element with data-live="URL" is replaced every
// data-every milliseconds by the server-rendered fragment at URL, until a fragment carries
// data-final. The pages work without this script (reload to update).
"use strict";
(function () {
  function busy(el) {
    var active = document.activeElement;
    if (active && el.contains(active) && /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(active.tagName)) {
      return true;
    }
    var fields = el.querySelectorAll("input:not([type=hidden]), textarea");
    for (var i = 0; i < fields.length; i++) { if (fields[i].value) { return true; } }
    return false;
  }
  function poll(el) {
    var url = el.getAttribute("data-live");
    var every = parseInt(el.getAttribute("data-every") || "2000", 10);
    function tick() {
      fetch(url, { headers: { "X-Console-Live": "1" }, credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.text();
        })
        .then(function (html) {
          // Never swap away a form someone is filling in (a reason to retry or cancel).
          if (busy(el)) { setTimeout(tick, every); return; }
          el.innerHTML = html;
          if (!el.querySelector("[data-final]")) { setTimeout(tick, every); }
        })
        .catch(function () { setTimeout(tick, every * 3); });
    }
    if (!el.querySelector("[data-final]")) { setTimeout(tick, every); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelectorAll("[data-live]");
    for (var i = 0; i < live.length; i++) { poll(live[i]); }
  });
})();
