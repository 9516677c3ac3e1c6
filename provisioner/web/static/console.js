// Move the focus to the result of the last action (a notice, an error, a new key), so that
// a screen reader announces it and the keyboard continues from there. No other script.
document.addEventListener("DOMContentLoaded", function () {
  var target = document.querySelector("[data-focus]");
  if (target) { target.focus(); }
});
