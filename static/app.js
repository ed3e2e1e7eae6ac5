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
  // A refused form answers with its 4xx status and a flash message, marked
  // by the server (handlers.FlashHeader): show it where the form's answer
  // goes instead of dropping it as htmx does with errors.
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.xhr.getResponseHeader("Phonehome-Flash")) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });
  // A page kept in the back/forward cache keeps its event stream open, and
  // browsers allow only 6 connections to a host over HTTP/1.1: close the
  // stream when the page is hidden, and reload it if it is shown again.
  window.addEventListener("pagehide", function (e) {
    if (!e.persisted) return;
    document.querySelectorAll("[sse-connect]").forEach(function (el) {
      htmx.trigger(el, "htmx:beforeCleanupElement");
    });
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) location.reload();
  });
  // The indicator comes hidden (without JavaScript nothing is live): show
  // it on pages that have a stream.
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelector(".live");
    if (live && document.querySelector("[sse-connect]")) live.hidden = false;
  });
})();
