(function () {
  "use strict";
  // Sortable tables: click a header to sort by it, click again to reverse. Cells sort by data-v when
  // present (numbers), else by their text.
  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var v = cell.getAttribute("data-v");
    if (v !== null) { var n = parseFloat(v); return isNaN(n) ? -Infinity : n; }
    return cell.textContent.trim().toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      if (!th.classList.contains("sortable")) return;
      th.addEventListener("click", function () {
        var descending = th.getAttribute("aria-sort") === "ascending";
        Array.prototype.forEach.call(headers, function (h) {
          h.removeAttribute("aria-sort");
          var a = h.querySelector(".arrow"); if (a) a.textContent = "";
        });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        th.querySelector(".arrow").textContent = descending ? "\u25BC" : "\u25B2";
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          var c = x < y ? -1 : x > y ? 1 : 0;
          return descending ? -c : c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });

  // Kind filter of the layer table.
  document.querySelectorAll(".toolbar[data-filter]").forEach(function (bar) {
    var table = document.getElementById(bar.getAttribute("data-filter"));
    bar.querySelectorAll("button[data-kind]").forEach(function (button) {
      button.addEventListener("click", function () {
        bar.querySelectorAll("button[data-kind]").forEach(function (b) { b.classList.remove("on"); });
        button.classList.add("on");
        var kind = button.getAttribute("data-kind");
        Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
          row.style.display = (kind === "all" || row.getAttribute("data-kind") === kind) ? "" : "none";
        });
      });
    });
  });

  // Tile map tooltip, and highlighting every tile of the hovered layer.
  var tip = document.createElement("div");
  tip.className = "tip";
  document.body.appendChild(tip);
  function esc(s) { return s.replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }
  document.querySelectorAll("svg.tilemap").forEach(function (svg) {
    var lastLayer = null;
    function highlight(layer) {
      if (layer === lastLayer) return;
      lastLayer = layer;
      svg.querySelectorAll("rect.w.hl").forEach(function (r) { r.classList.remove("hl"); });
      if (layer === null) { svg.classList.remove("focus"); return; }
      svg.classList.add("focus");
      svg.querySelectorAll('rect.w[data-l="' + layer + '"]').forEach(function (r) { r.classList.add("hl"); });
    }
    svg.addEventListener("mousemove", function (event) {
      var g = event.target.closest("g.tile");
      if (!g) { tip.style.display = "none"; highlight(null); return; }
      var util = (100 * parseFloat(g.getAttribute("data-util"))).toFixed(1);
      var html = "<span class='n'>tile " + g.getAttribute("data-tile") + " \u00B7 " + util + " % used</span>";
      var rect = event.target.classList.contains("w") ? event.target : null;
      if (rect) {
        var parts = rect.getAttribute("data-tip").split("|");
        html = "<b>" + esc(parts[0]) + "</b>" + html + "<br><span class='n'>" + esc(parts[1]) + "</span><br><span class='n'>" + esc(parts[2]) + "</span>";
        highlight(rect.getAttribute("data-l"));
      } else {
        html = "<b>empty cells</b>" + html;
        highlight(null);
      }
      tip.innerHTML = html;
      tip.style.display = "block";
      place(event);
    });
    svg.addEventListener("mouseleave", function () { tip.style.display = "none"; highlight(null); });
  });
  function place(event) {
    var x = event.clientX + 14, y = event.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth - 8) x = event.clientX - tip.offsetWidth - 14;
    if (y + tip.offsetHeight > window.innerHeight - 8) y = event.clientY - tip.offsetHeight - 14;
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  document.querySelectorAll("svg.chipmap").forEach(function (svg) {
    svg.addEventListener("mousemove", function (event) {
      var text = event.target.getAttribute && event.target.getAttribute("data-tip");
      if (!text) { tip.style.display = "none"; return; }
      var parts = text.split("|");
      tip.innerHTML = "<b>" + esc(parts[1]) + "</b><span class='n'>" + esc(parts[0]) + " \u00B7 " + esc(parts[2]) + "</span>";
      tip.style.display = "block";
      place(event);
    });
    svg.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  });
})();
