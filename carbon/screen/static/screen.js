// The big screen: the first snapshot comes with the page, the next ones by server-sent events
// (EventSource reconnects by itself); without EventSource it polls snapshot.json with its ETag.
(function () {
  "use strict";
  var body = document.body;
  var shown = JSON.parse(document.getElementById("initial").textContent);

  function text(id, value) { document.getElementById(id).textContent = value; }

  function countUp(id, target, places) {
    // Animate the display only; the exact figure (a string from the server) is what stays.
    var el = document.getElementById(id);
    var from = parseFloat(el.dataset.value || "0"), to = parseFloat(target);
    el.dataset.value = target;
    if (!isFinite(from) || !isFinite(to) || from === to) { el.textContent = target; return; }
    var started = null, span = 1200;
    function frame(now) {
      if (started === null) started = now;
      var t = Math.min(1, (now - started) / span), eased = 1 - Math.pow(1 - t, 3);
      el.textContent = t < 1 ? (from + (to - from) * eased).toFixed(places) : target;
      if (t < 1 && el.dataset.value === target) window.requestAnimationFrame(frame);
    }
    window.requestAnimationFrame(frame);
  }

  function list(id, items, render, empty) {
    var ol = document.getElementById(id), before = {};
    Array.prototype.forEach.call(ol.children, function (li) { before[li.dataset.key] = true; });
    ol.textContent = "";
    if (!items.length) {
      var li = document.createElement("li"); li.className = "empty"; li.textContent = empty; ol.appendChild(li);
      return;
    }
    items.forEach(function (item) {
      var li = document.createElement("li"), parts = render(item);
      li.dataset.key = parts.key;
      if (Object.keys(before).length && !before[parts.key]) li.className = "fresh";
      parts.cells.forEach(function (cell) {
        var span = document.createElement("span"); span.className = cell[0]; span.textContent = cell[1];
        li.appendChild(span);
      });
      ol.appendChild(li);
    });
  }

  function show(snapshot) {
    countUp("kg", snapshot.kg_neutralized, 3);
    countUp("participants", String(snapshot.participants), 0);
    countUp("footprints", String(snapshot.footprints), 0);
    var progress = snapshot.progress;
    if (progress && progress.percent !== null) {
      var percent = Math.min(100, parseFloat(progress.percent) || 0);
      document.getElementById("progress-fill").style.width = percent + "%";
      text("progress-percent", progress.percent + "%");
      text("progress-text", "已中和 " + progress.neutralized_kg + " / 预计 " + progress.estimated_kg +
        " kg · neutralized of the estimated footprint");
    } else {
      text("progress-percent", "—");
      text("progress-text", "预计排放待计算 / the estimated footprint comes with the first footprints");
    }
    list("newest", snapshot.newest, function (c) {
      return {key: c.key, cells: [["name", c.name], ["kg", c.kg + " kg"], ["time", c.issued_at]]};
    }, "等待第一张证书 / Waiting for the first certificate");
    list("top", snapshot.top, function (e) {
      return {key: e.rank + e.name, cells: [["name", e.rank + ". " + e.name], ["kg", e.kg + " kg"]]};
    }, "暂无排名 / No ranking yet");
    text("updated", new Date().toLocaleTimeString());
    shown = snapshot;
  }

  function online(ok) {
    var status = document.getElementById("status");
    status.className = ok ? "status" : "status off";
    status.textContent = ok ? "实时 / live" : "重新连接中 / reconnecting";
  }

  show(shown);
  if (window.EventSource) {
    var source = new EventSource(body.dataset.events);
    source.addEventListener("snapshot", function (event) { online(true); show(JSON.parse(event.data)); });
    source.onopen = function () { online(true); };
    source.onerror = function () { online(false); };
  } else {
    var etag = null;
    window.setInterval(function () {
      var request = new XMLHttpRequest();
      request.open("GET", body.dataset.snapshot);
      if (etag) request.setRequestHeader("If-None-Match", etag);
      request.onload = function () {
        online(request.status === 200 || request.status === 304);
        if (request.status === 200) { etag = request.getResponseHeader("ETag"); show(JSON.parse(request.responseText)); }
      };
      request.onerror = function () { online(false); };
      request.send();
    }, 2000);
  }
})();
