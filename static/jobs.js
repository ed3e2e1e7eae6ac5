// The jobs dashboard's selection: "select all" ticks every row of the page,
// the bulk form shows how many are ticked, Delete selected asks first, and a
// bulk action that went through clears the ticks. Rows keep their ticks
// across live updates by themselves (hx-preserve). An action's answer is
// kept in view when its place is not. Everything else is htmx.
(function () {
  "use strict";
  function picks() {
    return document.querySelectorAll('input[name="id"][form="jobs-bulk"]');
  }
  function update() {
    var all = picks(), n = 0;
    all.forEach(function (box) { if (box.checked) n++; });
    var count = document.querySelector("#jobs-bulk .bulk-count");
    if (count) count.textContent = n === 0 ? "" : n === 1 ? "1 selected" : n + " selected";
    var head = document.querySelector(".pick-all");
    if (head) {
      head.checked = all.length > 0 && n === all.length;
      head.indeterminate = n > 0 && n < all.length;
    }
  }
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.classList && t.classList.contains("pick-all")) {
      picks().forEach(function (box) { box.checked = t.checked; });
    }
    update();
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    // getAttribute: the form's own .id is clobbered by its fields named "id".
    var elt = e.detail.elt;
    if (elt && elt.getAttribute && elt.getAttribute("id") === "jobs-bulk") {
      confirmed(elt, "");
      if (e.detail.successful && !(e.detail.xhr && /flash-error/.test(e.detail.xhr.responseText))) {
        picks().forEach(function (box) { box.checked = false; });
      }
    }
    update();
  });
  // A bulk button with data-confirm (Delete selected) asks first, naming
  // how many jobs are ticked: "{jobs}" becomes "3 selected jobs". htmx
  // reads hx-confirm from the form only, which all three buttons share, so
  // the question is asked here, from htmx:confirm, and only for the button
  // that submitted. With nothing ticked the server answers why. A yes is
  // sent as the form's confirm (the count agreed to): the server deletes
  // a selection only with it, and asks itself without it.
  function confirmed(form, value) {
    var field = form.querySelector('input[name="confirm"]');
    if (field) field.value = value;
  }
  var submitter = null;
  document.addEventListener("click", function (e) {
    var b = e.target && e.target.closest ? e.target.closest('#jobs-bulk button[type="submit"]') : null;
    if (b) submitter = b;
  }, true);
  document.addEventListener("htmx:confirm", function (e) {
    var elt = e.detail.elt;
    if (!elt || !elt.getAttribute || elt.getAttribute("id") !== "jobs-bulk") return;
    var ev = e.detail.triggeringEvent;
    var btn = (ev && ev.submitter) || submitter;
    var ask = btn && btn.getAttribute("data-confirm");
    var n = 0;
    picks().forEach(function (box) { if (box.checked) n++; });
    if (!ask || n === 0) return;
    e.preventDefault();
    if (window.confirm(ask.replace("{jobs}", n === 1 ? "1 selected job" : n + " selected jobs"))) {
      confirmed(elt, String(n));
      e.detail.issueRequest(true);
    }
  });
  // An action's answer goes to #jobs-flash, at the top of the page, which
  // may be far above the button pressed (Retry selected with the list
  // scrolled down). When its place is out of the window, the message is
  // pinned to the window's bottom (jobs.css), over the page, while its
  // place keeps its height: nothing moves. Once the page is scrolled on,
  // or the message clicked, it goes back to its place.
  var pinnedAt = null;
  function unpin() {
    var box = document.getElementById("jobs-flash");
    if (box) {
      box.classList.remove("flash-pinned");
      box.style.minHeight = "";
    }
    pinnedAt = null;
  }
  document.addEventListener("htmx:afterSwap", function (e) {
    var box = e.detail.target;
    if (!box || !box.getAttribute || box.getAttribute("id") !== "jobs-flash") return;
    unpin();
    var r = box.getBoundingClientRect();
    if (!box.querySelector(".flash") || (r.bottom > 0 && r.top < window.innerHeight)) return;
    box.style.minHeight = box.offsetHeight + "px";
    box.classList.add("flash-pinned");
    pinnedAt = window.scrollY;
  });
  window.addEventListener("scroll", function () {
    // The browser may scroll a little by itself to keep what is in view
    // in place as the page changes above it: only a real scroll unpins.
    if (pinnedAt !== null && Math.abs(window.scrollY - pinnedAt) >= 120) unpin();
  }, { passive: true });
  document.addEventListener("click", function (e) {
    if (pinnedAt !== null && e.target.closest && e.target.closest("#jobs-flash")) unpin();
  });
  document.addEventListener("htmx:afterSettle", update);
  document.addEventListener("DOMContentLoaded", update);
})();
