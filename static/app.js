// phonehome's only script of its own: it shows whether the live stream is
// connected. Everything else is htmx and its SSE extension.
(function () {
  "use strict";
  function setLive(state, text) {
    document.body.dataset.live = state;
    var label = document.querySelector(".live-text");
    if (label) label.textContent = text;
  }
  document.addEventListener("htmx:sseOpen", function () { setLive("open", "live"); });
  document.addEventListener("htmx:sseError", function () { setLive("error", "reconnecting…"); });
  document.addEventListener("DOMContentLoaded", function () {
    if (!document.querySelector("[sse-connect]")) {
      var live = document.querySelector(".live");
      if (live) live.hidden = true;
    }
  });
})();
