// The mini-program, played in a browser. Every call is one the real mini-program makes to the
// public API, except wx.login and wx.requestPayment, which the WeChat app does: here the sandbox
// plays them through /simulator/wx/*.
(function () {
  "use strict";
  var API = "/api/v1";
  var state = {token: null, scene: null, view: null, footprint: null, order: null, number: null, life: null};

  function $(id) { return document.getElementById(id); }
  function each(list, fn) { Array.prototype.forEach.call(list, fn); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function log(method, path, status) {
    var line = el("li", {}, method + " " + path + " → " + status);
    if (status >= 400 || status === 0) line.className = "bad";
    $("log").appendChild(line);
    $("log").scrollTop = $("log").scrollHeight;
  }

  function call(method, path, body, headers) {
    var options = {method: method, headers: headers || {}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (response) {
      log(method, path, response.status);
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!response.ok) {
          var error = (data && data.error) || {code: "http_" + response.status, message: text, details: {}};
          error.status = response.status;
          throw error;
        }
        return data;
      });
    }, function () {
      log(method, path, 0);
      throw {code: "network", message: "网络错误 / Network error", details: {}};
    });
  }

  function api(method, path, body, extra) {
    var headers = extra || {};
    if (state.token) headers.Authorization = "Bearer " + state.token;
    return call(method, API + path, body, headers);
  }

  var wx = {  // what the WeChat app provides; the sandbox plays it
    login: function (openid) { return call("POST", "/simulator/wx/login", {openid: openid}); },
    requestPayment: function (params) { return call("POST", "/simulator/wx/request-payment", params); }
  };

  function go(page) {
    each(document.querySelectorAll("section[data-page]"), function (section) { section.hidden = section.dataset.page !== page; });
    document.body.dataset.current = page;
    if (page === "leaderboard") showLeaderboard();
    if (page === "life") lifePreview();
  }

  function clearErrors(scope) {
    each(scope.querySelectorAll(".error"), function (p) { p.textContent = ""; });
    each(scope.querySelectorAll(".invalid"), function (input) { input.classList.remove("invalid"); });
  }

  function fail(page, error) {
    var box = document.querySelector('[data-error="' + page + '"]');
    if (box) box.textContent = (error.message || error.code || "出错了 / Something went wrong");
  }

  function fieldError(scope, name, messages) {
    var box = scope.querySelector('[data-field="' + name + '"]');
    if (!box) return false;
    box.textContent = [].concat(messages).join(" ");
    var input = scope.querySelector('[name="' + name + '"]');
    if (input) input.classList.add("invalid");
    return true;
  }

  // --- scan and log in --------------------------------------------------------------------------

  $("openid").value = "o_sim_" + Math.random().toString(36).slice(2, 10);
  each(document.querySelectorAll("button.code"), function (button) {
    button.addEventListener("click", function () { $("scene-input").value = button.dataset.scene; scan(); });
  });
  $("scan").addEventListener("click", scan);

  function scan() {
    var scene = $("scene-input").value.trim();
    clearErrors(document.querySelector('[data-page="scan"]'));
    if (!scene) { fail("scan", {message: "请先选择或输入场景码 / Pick or type a scene code"}); return; }
    $("scan").disabled = true;
    wx.login($("openid").value.trim()).then(function (answer) {
      return api("POST", "/auth/login", {code: answer.code, scene: scene});
    }).then(function (login) {
      state.token = login.token;
      var nickname = $("nickname").value.trim();  // the profile page: checked by WeChat's content security
      return nickname ? api("PATCH", "/me", {nickname: nickname}) : null;
    }).then(function () {
      return api("GET", "/scenes/resolve?scene=" + encodeURIComponent(scene));
    }).then(function (view) {
      state.scene = scene;
      state.view = view;
      showScene(view);
      go("scene");
    }).catch(function (error) {
      var page = document.querySelector('[data-page="scan"]');
      if (!(error.details && error.details.nickname && fieldError(page, "nickname", error.details.nickname))) {
        fail("scan", error);
      }
    }).then(function () { $("scan").disabled = false; });
  }

  function showScene(view) {
    $("title").textContent = view.scene.name_zh;
    $("scene-name").textContent = view.scene.name_zh;
    $("scene-name-en").textContent = view.scene.name_en || "";
    $("scene-description").textContent = view.scene.description || "";
    $("scene-kg").textContent = view.progress.kg_neutralized;
    var offer = $("offer");
    offer.textContent = "";
    view.offer.forEach(function (project) {
      offer.appendChild(el("li", {}, project.name_zh + "（" + project.registry + "，¥" + project.price_per_tonne + "/t）"));
    });
    buildCalculator(view.preset.activities);
  }

  // --- the calculator -----------------------------------------------------------------------------

  var LABELS = {flight: "航班 / Flight", rail: "火车 / Rail", coach: "大巴 / Coach", bus: "公交 / Bus",
    metro: "地铁 / Metro", taxi: "出租车 / Taxi", car: "自驾 / Car", hotel: "住宿 / Hotel", meal: "餐饮 / Meals",
    venue_share: "会场用电分摊 / Share of the venue's electricity"};
  var DIETS = [["medium_meat", "适中 / medium meat"], ["high_meat", "多肉 / high meat"], ["low_meat", "少肉 / low meat"],
    ["vegetarian", "素食 / vegetarian"], ["vegan", "纯素 / vegan"]];
  var CABINS = [["economy", "经济舱 / economy"], ["premium_economy", "超级经济舱 / premium economy"],
    ["business", "商务舱 / business"], ["first", "头等舱 / first"]];
  // The inputs each activity asks for: [field, label, kind, fallback when the preset gives no default]
  var FIELDS = {
    flight: [["from", "出发机场 / From (IATA)", "text", "PEK"], ["to", "到达机场 / To (IATA)", "text", "CTU"],
      ["cabin", "舱位 / Cabin", CABINS, "economy"], ["round_trip", "往返 / Round trip", "check", true]],
    rail: [["from_city", "出发城市 / From city", "text", "重庆"], ["to_city", "到达城市 / To city", "text", "成都"],
      ["round_trip", "往返 / Round trip", "check", true]],
    coach: [["distance_km", "单程公里 / km one way", "number", "120"], ["round_trip", "往返 / Round trip", "check", true]],
    car: [["distance_km", "单程公里 / km one way", "number", "40"], ["round_trip", "往返 / Round trip", "check", true]],
    taxi: [["distance_km", "公里 / km", "number", "25"], ["round_trip", "往返 / Round trip", "check", false]],
    bus: [["distance_km", "公里 / km", "number", "8"]],
    metro: [["distance_km", "公里 / km", "number", "12"]],
    hotel: [["nights", "晚数 / Nights", "integer", "2"]],
    meal: [["count", "餐数 / Meals", "integer", "6"], ["diet", "饮食 / Diet", DIETS, "medium_meat"]],
    venue_share: []
  };

  function buildCalculator(preset) {
    var form = $("activities");
    form.textContent = "";
    preset.forEach(function (item, position) {
      var fields = FIELDS[item.type];
      if (!fields) return;
      var set = el("fieldset", {"data-type": item.type, "data-position": String(position)});
      var legend = el("legend");
      var include = el("input", {type: "checkbox", name: "include", checked: "checked"});
      legend.appendChild(include);
      legend.appendChild(document.createTextNode(" " + (LABELS[item.type] || item.type)));
      set.appendChild(legend);
      var defaults = item.defaults || {};
      fields.forEach(function (spec) {
        var name = spec[0], kind = spec[2];
        var value = defaults[name] !== undefined ? defaults[name] : spec[3];
        var label = el("label", {}, spec[1] + " ");
        var input;
        if (Array.isArray(kind)) {
          input = el("select", {name: name});
          kind.forEach(function (option) {
            var node = el("option", {value: option[0]}, option[1]);
            if (option[0] === value) node.selected = true;
            input.appendChild(node);
          });
        } else if (kind === "check") {
          input = el("input", {type: "checkbox", name: name});
          input.checked = !!value;
        } else {
          input = el("input", {name: name, value: String(value),
            inputmode: kind === "text" ? "text" : (kind === "integer" ? "numeric" : "decimal")});
        }
        label.appendChild(input);
        set.appendChild(label);
        set.appendChild(el("p", {"class": "error", "data-field": name === "from" || name === "to" ? "route" : name}));
      });
      if (item.type === "venue_share") set.appendChild(el("p", {"class": "small"}, "由场景的会场用电与人数计算 / From the venue's electricity and attendance"));
      set.appendChild(el("p", {"class": "error", "data-field": "_schema"}));
      form.appendChild(set);
    });
    schedulePreview();
  }
  $("activities").addEventListener("input", schedulePreview);
  $("activities").addEventListener("change", schedulePreview);

  function number(text, integer) {
    text = String(text).trim();
    if (integer) return /^\d{1,9}$/.test(text) ? parseInt(text, 10) : text;  // the API says what is wrong
    return text;
  }

  function collect() {
    var sets = [], activities = [];
    each($("activities").querySelectorAll("fieldset"), function (set) {
      if (!set.querySelector('[name="include"]').checked) return;
      var type = set.dataset.type, value = function (name) { var input = set.querySelector('[name="' + name + '"]');
        return input.type === "checkbox" ? input.checked : input.value; };
      var activity = {type: type};
      if (type === "flight") {
        activity.route = [value("from").trim().toUpperCase(), value("to").trim().toUpperCase()];
        activity.cabin = value("cabin");
        activity.round_trip = value("round_trip");
      } else if (type === "rail") {
        activity.from_city = value("from_city").trim(); activity.to_city = value("to_city").trim();
        activity.round_trip = value("round_trip");
      } else if (type === "hotel") {
        activity.nights = number(value("nights"), true);
      } else if (type === "meal") {
        activity.count = number(value("count"), true); activity.diet = value("diet");
      } else if (type !== "venue_share") {
        activity.distance_km = number(value("distance_km"), false);
        if (set.querySelector('[name="round_trip"]')) activity.round_trip = value("round_trip");
      }
      sets.push(set);
      activities.push(activity);
    });
    return {sets: sets, body: {kind: "event", scene: state.scene, activities: activities}};
  }

  function showFieldErrors(sets, details) {
    var shown = false;
    Object.keys(details || {}).forEach(function (key) {
      var parts = key.split(".");
      if (parts[0] === "activities" && sets[parseInt(parts[1], 10)]) {
        shown = fieldError(sets[parseInt(parts[1], 10)], parts[2] || "_schema", details[key]) || shown;
      }
    });
    return shown;
  }

  var previewTimer = null, previewSeq = 0;
  function schedulePreview() {
    window.clearTimeout(previewTimer);
    previewTimer = window.setTimeout(preview, 250);
  }

  function preview() {
    var form = collect(), seq = ++previewSeq;
    var page = document.querySelector('[data-page="calculator"]');
    if (!form.body.activities.length) { $("preview-total").textContent = "0.000"; return; }
    api("POST", "/footprints/preview", form.body).then(function (result) {
      if (seq !== previewSeq) return;
      clearErrors(page);
      $("preview-total").textContent = result.total_kg;
    }).catch(function (error) {
      if (seq !== previewSeq) return;
      clearErrors(page);
      $("preview-total").textContent = "—";
      if (!showFieldErrors(form.sets, error.details)) fail("calculator", error);
    });
  }

  $("calculate").addEventListener("click", function () {
    var form = collect(), page = document.querySelector('[data-page="calculator"]');
    clearErrors(page);
    api("POST", "/footprints", form.body).then(function (footprint) {
      state.footprint = footprint;
      showResult(footprint);
      go("result");
    }).catch(function (error) { if (!showFieldErrors(form.sets, error.details)) fail("calculator", error); });
  });

  function showResult(footprint) {
    $("result-total").textContent = footprint.total_kg;
    $("result-neutralize").textContent = footprint.neutralize_kg;
    $("dataset").textContent = footprint.dataset_version;
    var body = $("lines");
    body.textContent = "";
    footprint.lines.forEach(function (line) {
      var row = el("tr"), what = el("td");
      what.appendChild(el("div", {}, line.label));
      what.appendChild(el("div", {"class": "small"}, line.quantity + " " + line.unit + " × " + line.factor.value + " " +
        line.factor.unit + (line.divided_by ? " ÷ " + line.divided_by : "")));
      what.appendChild(el("div", {"class": "small source"}, "来源 / Source: " + line.factor.source +
        (line.factor.year ? ", " + line.factor.year : "")));
      row.appendChild(what);
      row.appendChild(el("td", {"class": "kg"}, line.kg));
      body.appendChild(row);
    });
  }

  // --- order, pay, certificate ----------------------------------------------------------------------

  $("order").addEventListener("click", function () {
    var page = document.querySelector('[data-page="result"]');
    clearErrors(page);
    var body = {footprint_id: state.footprint.id, scene: state.scene};
    var name = $("beneficiary").value.trim();
    if (name) body.beneficiary_name = name;
    var key = "sim-" + state.footprint.id + "-" + Math.random().toString(36).slice(2, 8);
    api("POST", "/orders", body, {"Idempotency-Key": key}).then(function (created) {
      state.order = created;
      $("pay-project").textContent = created.order.project.name_zh;
      $("pay-amount").textContent = created.order.amount;
      $("pay-kg").textContent = created.order.kg + " kg CO₂e · " + created.order.purpose;
      $("pay-state").textContent = "";
      go("pay");
    }).catch(function (error) {
      var details = error.details || {}, shown = false;
      Object.keys(details).forEach(function (key) { shown = fieldError(page, key, details[key]) || shown; });
      if (!shown) fail("result", error);
    });
  });

  $("pay").addEventListener("click", function () {
    var created = state.order;
    $("pay").disabled = true;
    $("pay-state").textContent = "支付中 / Paying…";
    wx.requestPayment(created.request_payment).then(function () {
      $("pay-state").textContent = "已支付，等待证书 / Paid, waiting for the certificate…";
      return waitFulfilled(created.order.id, 0);
    }).then(function (status) {
      return api("GET", "/certificates/" + encodeURIComponent(status.certificate_number));
    }).then(function (certificate) {
      showCertificate(certificate);
      go("certificate");
    }).catch(function (error) { fail("pay", error); }).then(function () { $("pay").disabled = false; });
  });

  // After paying: poll the order's status, a little less often each time (as the mini-program does).
  var POLL_MS = [300, 500, 800, 1200, 2000];
  var POLL_TRIES = 40;

  function waitFulfilled(orderId, tries) {
    return api("GET", "/orders/" + encodeURIComponent(orderId) + "/status").then(function (status) {
      if (status.status === "fulfilled") return status;
      if (tries >= POLL_TRIES) throw {message: "订单状态 / Order status: " + status.status};
      var delay = POLL_MS[Math.min(tries, POLL_MS.length - 1)];
      return new Promise(function (resolve) { window.setTimeout(resolve, delay); }).then(function () {
        return waitFulfilled(orderId, tries + 1);
      });
    });
  }

  function showCertificate(certificate) {
    var record = certificate.record, number = certificate.number;
    state.number = number;
    $("card").src = API + "/certificates/" + encodeURIComponent(number) + "/card.jpg";
    $("cert-number").textContent = number;
    $("cert-line").textContent = certificate.beneficiary + " 已中和 / neutralized " + record.kg + " kg CO₂e" +
      (record.scene ? " · " + record.scene.name : "");
    $("cert-verify").href = "/c/" + encodeURIComponent(number);
    $("share-title").textContent = "我在" + (record.scene ? record.scene.name : "点点碳中和") + "中和了 " + record.kg +
      " kg 碳排放";
    $("share-image").src = API + "/certificates/" + encodeURIComponent(number) + "/card.jpg";
    $("share-path").textContent = "pages/certificate/index?no=" + number;
    $("share-poster").href = API + "/certificates/" + encodeURIComponent(number) + "/poster.png";
  }

  // --- leaderboard ------------------------------------------------------------------------------------

  function showLeaderboard() {
    var page = document.querySelector('[data-page="leaderboard"]');
    clearErrors(page);
    if (!state.view) { fail("leaderboard", {message: "请先扫码 / Scan a code first"}); return; }
    var query = "?scene=" + encodeURIComponent(state.view.scene.id) + "&period=all";
    Promise.all([api("GET", "/leaderboards" + query + "&limit=10"), api("GET", "/leaderboards/me" + query)])
      .then(function (answers) {
        var board = answers[0], me = answers[1], list = $("board");
        list.textContent = "";
        board.entries.forEach(function (entry) {  // the public board knows no viewer: /me says which is mine
          var mine = entry.me || (me.rank === entry.rank && me.kg === entry.kg);
          var item = el("li", {"class": mine ? "me" : ""});
          item.appendChild(el("span", {}, entry.rank + ". " + entry.name));
          item.appendChild(el("span", {}, entry.kg + " kg"));
          list.appendChild(item);
        });
        $("my-rank").textContent = me.rank === null ? "—" : String(me.rank);
        $("my-kg").textContent = me.kg + " kg";
      }).catch(function (error) { fail("leaderboard", error); });
  }

  // --- life footprint -----------------------------------------------------------------------------------

  function lifeBody() {
    var form = $("life-form"), groups = {}, activities = [], household = form.elements.household_size.value.trim();
    each(form.elements, function (input) {
      var parts = input.name.split(".");
      if (parts.length !== 2) return;
      if (!groups[parts[0]]) { groups[parts[0]] = {type: parts[0]}; activities.push(groups[parts[0]]); }
      var integer = parts[1] === "round_trips_per_year";
      groups[parts[0]][parts[1]] = input.tagName === "SELECT" ? input.value : number(input.value, integer);
    });
    return {kind: "life", household_size: number(household, true), activities: activities};
  }

  function showLifeErrors(body, details) {
    var scope = document.querySelector('[data-page="life"]'), shown = false;
    Object.keys(details || {}).forEach(function (key) {
      var parts = key.split(".");
      if (parts[0] === "activities" && body.activities[parseInt(parts[1], 10)]) {
        shown = fieldError(scope, body.activities[parseInt(parts[1], 10)].type + "." + parts[2], details[key]) || shown;
      } else {
        shown = fieldError(scope, key, details[key]) || shown;
      }
    });
    return shown;
  }

  var lifeTimer = null, lifeSeq = 0;
  function lifePreview() {
    var body = lifeBody(), seq = ++lifeSeq, scope = document.querySelector('[data-page="life"]');
    api("POST", "/footprints/preview", body).then(function (result) {
      if (seq !== lifeSeq) return;
      clearErrors(scope);
      $("life-preview").textContent = result.total_kg;
    }).catch(function (error) {
      if (seq !== lifeSeq) return;
      clearErrors(scope);
      if (!showLifeErrors(body, error.details)) fail("life", error);
    });
  }
  $("life-form").addEventListener("input", function () {
    window.clearTimeout(lifeTimer);
    lifeTimer = window.setTimeout(lifePreview, 250);
  });
  $("life-form").addEventListener("change", function () { lifePreview(); });

  $("life-save").addEventListener("click", function () {
    var body = lifeBody(), scope = document.querySelector('[data-page="life"]');
    clearErrors(scope);
    if (!state.token) { fail("life", {message: "请先扫码登录 / Scan a code to log in first"}); return; }
    api("POST", "/footprints", body).then(function (saved) {
      state.life = saved;
      $("life-result").hidden = false;
      $("life-total").textContent = saved.total_kg;
      $("life-china").textContent = saved.comparison.china_per_capita_kg;
      $("life-ratio").textContent = saved.comparison.ratio_to_china;
      $("life-source").textContent = "来源 / Source: " + saved.comparison.source;
    }).catch(function (error) { if (!showLifeErrors(body, error.details)) fail("life", error); });
  });

  each(document.querySelectorAll("[data-go]"), function (button) {
    button.addEventListener("click", function () { go(button.dataset.go); });
  });
  go("scan");
})();
