// Move the focus to the result of the last action (a notice, an error, a new key), so that
// a screen reader announces it and the keyboard continues from there.
document.addEventListener("DOMContentLoaded", function () {
  var target = document.querySelector("[data-focus]");
  if (target) { target.focus(); }
});

// Progress for large files. Without this script the forms work as plain forms.
// form[data-download] (the CSV export): fetched here, its progress shown as the bytes
// arrive, then saved under the server's file name; an error page is shown as usual.
// form[data-upload] (the CSV import): a busy indicator while the file is sent and checked.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!(form instanceof HTMLFormElement)) { return; }
  var bar = form.querySelector(".progress progress");
  var text = form.querySelector(".progress .progress-text");
  if (!bar || !text) { return; }
  if (form.hasAttribute("data-upload")) {
    bar.hidden = false;
    bar.removeAttribute("value");
    text.textContent = text.getAttribute("data-busy");
    return;
  }
  if (!form.hasAttribute("data-download") || !window.fetch || !window.ReadableStream) { return; }
  event.preventDefault();
  var url = form.action + "?" + new URLSearchParams(new FormData(form)).toString();
  var button = form.querySelector("button[type=submit]");
  bar.hidden = false;
  bar.value = 0;
  text.textContent = text.getAttribute("data-busy");
  if (button) { button.disabled = true; }
  function finish() { if (button) { button.disabled = false; } }
  fetch(url, {credentials: "same-origin"}).then(function (response) {
    if (!response.ok || !response.body) { window.location.href = url; return null; }
    var total = parseInt(response.headers.get("Content-Length") || "0", 10);
    var name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    var reader = response.body.getReader();
    var chunks = [];
    var received = 0;
    function pump() {
      return reader.read().then(function (step) {
        if (step.done) { return; }
        chunks.push(step.value);
        received += step.value.length;
        if (total) { bar.value = Math.round(received * 100 / total); }
        return pump();
      });
    }
    return pump().then(function () {
      var blob = new Blob(chunks, {type: response.headers.get("Content-Type") || "text/csv"});
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = name ? name[1] : "export.csv";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
      bar.value = 100;
      text.textContent = text.getAttribute("data-done");
    });
  }).then(finish, function () { finish(); window.location.href = url; });
});
