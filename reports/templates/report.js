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
  document.querySelectorAll("svg.tilemap:not(.chipview)").forEach(function (svg) {
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

  // Chip overview (models of thousands of tiles): one square per chip; a click draws that chip's tiles from the
  // table in #chip-data (per chip: runs [first local tile, count, layer index, fill in permille]).
  var chipTable = document.getElementById("chip-data");
  var overview = document.querySelector("svg.chipview");
  if (chipTable && overview) {
    var table = JSON.parse(chipTable.textContent);
    var detail = document.getElementById("chip-detail");
    var chosen = null;
    function showChip(chip) {
      var per = table.per_chip, runs = table.chips[String(chip)] || [];
      var cols = Math.min(per, Math.pow(2, Math.ceil(Math.log2(Math.sqrt(per * 2)))));
      var rows = Math.ceil(per / cols), cell = Math.max(6, Math.min(22, Math.floor(1000 / cols) - 2)), gap = 2;
      var held = new Array(per), used = 0;
      runs.forEach(function (run) {
        for (var k = 0; k < run[1]; k++) { held[run[0] + k] = run; used++; }
      });
      var parts = [];
      for (var t = 0; t < per; t++) {
        var x = (t % cols) * (cell + gap), y = Math.floor(t / cols) * (cell + gap), run = held[t];
        if (!run) { parts.push('<rect class="free" x="' + x + '" y="' + y + '" width="' + cell + '" height="' + cell + '"/>'); continue; }
        var layer = table.layers[run[2]], role = table.roles[layer[1]];
        var tipText = "tile " + (chip * per + t) + " (chip " + chip + ", tile " + t + " on it)|" + layer[0] + "|" + (run[3] / 10).toFixed(1) + " % of its cells used";
        parts.push('<rect x="' + x + '" y="' + y + '" width="' + cell + '" height="' + cell + '" fill="' + (role ? role[1] : "#999") + '" data-tip="' + esc(tipText) + '"/>');
      }
      var width = cols * (cell + gap) - gap, height = rows * (cell + gap) - gap;
      document.getElementById("chip-detail-map").innerHTML = '<svg class="chipmap" viewBox="0 0 ' + width + " " + height + '" width="' + width + '" height="' + height + '" role="img" aria-label="chip ' + chip + ' tiles">' + parts.join("") + "</svg>";
      document.getElementById("chip-detail-title").textContent = "Chip " + chip;
      document.getElementById("chip-detail-note").textContent = used + " of " + per + " tiles hold weights, each colored by the layer filling most of it; tile indices run left to right, top to bottom. Hover a tile for its layer.";
      detail.hidden = false;
      if (chosen) chosen.classList.remove("on");
      chosen = overview.querySelector('g.chip[data-chip="' + chip + '"]');
      if (chosen) chosen.classList.add("on");
      var drawn = detail.querySelector("svg.chipmap");
      drawn.addEventListener("mousemove", function (event) {
        var text = event.target.getAttribute && event.target.getAttribute("data-tip");
        if (!text) { tip.style.display = "none"; return; }
        var p = text.split("|");
        tip.innerHTML = "<b>" + esc(p[1]) + "</b><span class='n'>" + esc(p[0]) + " \u00B7 " + esc(p[2]) + "</span>";
        tip.style.display = "block";
        place(event);
      });
      drawn.addEventListener("mouseleave", function () { tip.style.display = "none"; });
    }
    overview.addEventListener("mousemove", function (event) {
      var g = event.target.closest("g.chip");
      if (!g) { tip.style.display = "none"; return; }
      var p = g.getAttribute("data-tip").split("|");
      tip.innerHTML = "<b>" + esc(p[0]) + "</b><span class='n'>" + esc(p[2]) + "</span><br><span class='n'>" + esc(p[1]) + "</span>";
      tip.style.display = "block";
      place(event);
    });
    overview.addEventListener("mouseleave", function () { tip.style.display = "none"; });
    overview.addEventListener("click", function (event) {
      var g = event.target.closest("g.chip");
      if (g) showChip(parseInt(g.getAttribute("data-chip"), 10));
    });
    overview.addEventListener("keydown", function (event) {
      var g = event.target.closest && event.target.closest("g.chip");
      if (g && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); showChip(parseInt(g.getAttribute("data-chip"), 10)); }
    });
  }
})();
