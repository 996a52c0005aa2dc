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

// An organization's Native payment: poll the order until paid, then show the certificate.
(function () {
  "use strict";
  var box = document.getElementById("native-pay");
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute("data-poll");
  var timer;
  function show(state) {
    box.querySelector("[data-state=status]").textContent = state.status;
    box.querySelector("[data-show=waiting]").hidden = state.paid;
    box.querySelector("[data-show=paid]").hidden = !state.paid;
    if (state.certificate) {
      box.querySelector("[data-state=certificate]").textContent = state.certificate;
      box.querySelector("[data-state=certificate-link]").setAttribute("href", "/c/" + state.certificate);
      var card = box.querySelector("[data-state=card-link]");
      card.setAttribute("href", "/api/v1/certificates/" + state.certificate + "/card.jpg");
      card.hidden = false;
      window.clearInterval(timer);
    }
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) { if (state) { show(state); } })
      .catch(function () { /* the next poll tries again */ });
  }
  timer = window.setInterval(poll, 1500);
})();
