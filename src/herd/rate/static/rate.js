// Keyboard use of the rating page: 1-4 or a-d pick a rating (and save it), arrows move between items.
// Served as a file, not inline, so the page's Content-Security-Policy can forbid every inline script.
(function () {
  "use strict";
  var keys = { "1": "A", "2": "B", "3": "C", "4": "D", a: "A", b: "B", c: "C", d: "D" };
  var sending = false;
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || sending) return;
    var target = event.target;
    if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT")) {
      if (event.key === "Escape") target.blur();
      return; // typing a comment must not rate the answer
    }
    var rating = keys[event.key.toLowerCase()];
    if (rating) {
      var button = document.querySelector('button[name="rating"][value="' + rating + '"]');
      if (!button) return;
      event.preventDefault();
      sending = true;
      button.classList.add("pressed");
      button.form.requestSubmit(button);
      return;
    }
    var rel = { ArrowLeft: "prev", ArrowRight: "next" }[event.key];
    var link = rel && document.querySelector('a[rel="' + rel + '"]');
    if (link) {
      event.preventDefault();
      window.location.assign(link.href);
    }
  });
  var form = document.getElementById("rate-form");
  if (form) form.addEventListener("submit", function () { sending = true; });
})();
