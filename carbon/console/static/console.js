// The dashboard's figures move without a reload: poll the scene's stats.json every 5 s.
(function () {
  "use strict";
  var board = document.getElementById("dashboard");
  if (!board || !window.fetch) { return; }
  var url = board.getAttribute("data-poll");
  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (figures) {
        if (!figures) { return; }
        board.querySelectorAll("[data-stat]").forEach(function (node) {
          var name = node.getAttribute("data-stat");
          if (name in figures && node.textContent !== figures[name]) { node.textContent = figures[name]; }
        });
        board.querySelectorAll("[data-stat-value]").forEach(function (node) {
          var name = node.getAttribute("data-stat-value");
          var number = parseFloat(figures[name]);
          if (isFinite(number)) { node.value = number; }
        });
      })
      .catch(function () { /* the next poll tries again */ });
  }
  window.setInterval(refresh, 5000);
})();
