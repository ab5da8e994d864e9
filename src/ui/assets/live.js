// Live pages: follow the event stream named by <main data-live> and, when
// an event arrives, fetch this page again and swap in its <main>. Rendering
// stays on the server; without JavaScript the page is simply static.
(function () {
  "use strict";
  var main = document.querySelector("main[data-live]");
  var badge = document.getElementById("live");
  if (!main || !window.EventSource || !window.fetch) {
    if (badge) badge.hidden = true;
    return;
  }
  var kinds = ["snapshot.status", "image.status", "project.current",
               "image.artifact", "snapshot.deleted"];
  var timer = null;
  var refreshing = false;
  var again = false;

  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        if (fresh) {
          main.innerHTML = fresh.innerHTML;
          main.dataset.refreshed = String(Date.now());
        }
      })
      .catch(function () {})
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  function changed() {
    // Events come in bursts (an image, then its snapshot): one refresh.
    clearTimeout(timer);
    timer = setTimeout(refresh, 150);
  }

  var source = new EventSource(main.dataset.live);
  kinds.forEach(function (kind) { source.addEventListener(kind, changed); });
  source.onmessage = changed;
  source.onopen = function () {
    // The server renders "connecting": "live" means the stream is open.
    if (badge) { badge.textContent = "live"; badge.className = "live"; }
  };
  source.onerror = function () {
    if (badge) { badge.textContent = "reconnecting"; badge.className = "live off"; }
  };
})();
