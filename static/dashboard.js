// The runtime dashboard's script: one EventSource on the stats stream of the
// chosen refresh interval, whose every event is the whole live panel, put in
// place of the panel with the same id. It closes the stream while the tab is
// hidden and, when the tab shows again, fetches the panel at once and
// reconnects. Nothing else: the server renders every figure and chart.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  var select = document.getElementById("dash-every");
  if (!root || !select) return;

  var source = null;
  var retry = null;
  var backoff = 1000;

  function setLive(state, text) {
    document.body.dataset.live = state;
    var label = document.querySelector(".live-text");
    if (label) label.textContent = text;
  }

  // swap replaces the element whose id the fragment's root element has.
  function swap(html) {
    var t = document.createElement("template");
    t.innerHTML = html.trim();
    var next = t.content.firstElementChild;
    if (!next || !next.id) return;
    var old = document.getElementById(next.id);
    if (old) old.replaceWith(next);
  }

  function stream() {
    var opt = select.options[select.selectedIndex];
    return (opt && opt.dataset.stream) || root.dataset.stream;
  }

  function close() {
    if (retry) { clearTimeout(retry); retry = null; }
    if (source) { source.close(); source = null; }
  }

  function open() {
    close();
    var es = new EventSource("/events?stream=" + encodeURIComponent(stream()));
    source = es;
    es.onopen = function () { backoff = 1000; setLive("open", "live"); };
    es.onmessage = function (e) { swap(e.data); };
    es.onerror = function () {
      if (source !== es) return;
      // Reconnect with a new EventSource rather than let this one resume:
      // each event is a whole snapshot, so the samples missed meanwhile
      // are not worth replaying.
      es.close();
      source = null;
      setLive("error", "reconnecting…");
      retry = setTimeout(open, backoff);
      backoff = Math.min(backoff * 2, 30000);
    };
  }

  function refreshNow() {
    fetch(root.dataset.liveUrl, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) { if (html) swap(html); })
      .catch(function () {});
  }

  function pause() {
    close();
    setLive("paused", "paused");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      pause();
    } else {
      refreshNow();
      open();
    }
  });

  select.addEventListener("change", function () {
    var url = new URL(window.location.href);
    url.searchParams.set("every", select.value);
    window.history.replaceState(null, "", url);
    open();
  });

  // app.js shows the live indicator on pages with sse-connect only; this
  // page has its own stream, so it shows it itself.
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelector(".live");
    if (live) live.hidden = false;
  });
  window.addEventListener("pagehide", close);
  window.addEventListener("pageshow", function (e) {
    if (e.persisted && !document.hidden) { refreshNow(); open(); }
  });

  if (document.hidden) pause(); else open();
})();
