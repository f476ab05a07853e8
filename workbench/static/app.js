// Keyboard shortcuts of the review workbench (served as a file: the Content-Security-Policy allows
// no inline script). Item page: a = same person, r = not the same, s = not sure, u = undo my last
// decision, n = next item, / = write a note, Esc = leave the note. Queue: j/k move, Enter or o opens.
(function () {
  "use strict";
  function typing(event) {
    var tag = (event.target && event.target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }
  function click(selector) {
    var element = document.querySelector(selector);
    if (element) { element.click(); return true; }
    return false;
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-href]")); }
  var selected = -1;
  function select(index) {
    var all = rows();
    if (!all.length) { return; }
    selected = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (row, i) { row.classList.toggle("selected", i === selected); });
    all[selected].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a, button, form")) { window.location.href = row.getAttribute("data-href"); }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && typing(event)) { event.target.blur(); return; }
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var handled = false;
    switch (event.key) {
      case "a": handled = click("#approve"); break;
      case "r": handled = click("#reject"); break;
      case "s": handled = click("#skip"); break;
      case "u": handled = click("#undo"); break;
      case "n": handled = click("#next-item"); break;
      case "/": var note = document.getElementById("note"); if (note) { note.focus(); handled = true; } break;
      case "j": select(selected + 1); handled = rows().length > 0; break;
      case "k": select(selected - 1); handled = rows().length > 0; break;
      case "o": case "Enter":
        if (selected >= 0 && rows()[selected]) { window.location.href = rows()[selected].getAttribute("data-href"); handled = true; }
        break;
    }
    if (handled) { event.preventDefault(); }
  });
})();
