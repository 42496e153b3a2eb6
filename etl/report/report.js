(function () {
  "use strict";

  var D = JSON.parse(document.getElementById("report-data").textContent);
  var T = D.t;
  var CLS = {};
  D.classes.forEach(function (c) { CLS[c.id] = c; });
  var ENT = {};
  D.entities.forEach(function (e) { ENT[e.entity] = e; });

  function fmt(s, p) {
    return String(s).replace(/\{(\w+)\}/g, function (m, k) { return p[k] != null ? p[k] : m; });
  }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function num(n) { return Number(n || 0).toLocaleString("en-US"); }
  function rowsOf(block) {
    return block.rows.map(function (r) {
      var o = {};
      block.columns.forEach(function (c, i) { o[c] = r[i]; });
      return o;
    });
  }
  function nullCell(v) { return v == null || v === "" ? '<span class="null">—</span>' : esc(v); }
  function isPii(entity, field) { return (D.pii[entity] || []).indexOf(field) >= 0; }
  function fieldLabel(entity, field) {
    if (!field) return '<span class="null">—</span>';
    return esc(D.fieldLabels[field] || field) + (isPii(entity, field) ? '<span class="pii" title="PII">*</span>' : "");
  }
  function chip(cls, label) {
    var c = CLS[cls] || { label: cls, color: "#888", help: "" };
    return '<span class="chip" title="' + esc(c.help) + '"><span class="dot" style="background:' + c.color + '"></span>' + esc(label || c.label) + "</span>";
  }
  function statusPill(st) {
    return '<span class="pill st-' + esc(st) + '">' + esc(D.statuses[st] || st) + "</span>";
  }

  // ------------------------------------------------------------------ charts (inline SVG)

  function svgText(x, y, s, attrs) {
    return '<text x="' + x + '" y="' + y + '" ' + (attrs || "") + ">" + esc(s) + "</text>";
  }
  function niceMax(v) {
    if (v <= 5) return 5;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (steps[i] * p >= v) return steps[i] * p; }
    return 10 * p;
  }
  function legend(classes) {
    return '<div class="legend">' + classes.map(function (id) {
      return '<span><span class="dot" style="background:' + CLS[id].color + '"></span>' + esc(CLS[id].label) + "</span>";
    }).join("") + "</div>";
  }
  function emptyChart(el) {
    el.innerHTML = '<div class="empty"><div class="big">✓</div><div>' + esc(T.none) + "</div></div>";
  }

  function chartByClass() {
    var el = document.getElementById("chart-classes");
    var ents = D.entities.filter(function (e) { return e.diff_total > 0; });
    if (!ents.length) { emptyChart(el); return; }
    var used = D.classes.map(function (c) { return c.id; }).filter(function (id) {
      return ents.some(function (e) { return (e.by_class[id] || 0) > 0; });
    });
    var W = 640, left = 150, right = 56, barH = 26, gap = 16, top = 8;
    var H = top + ents.length * (barH + gap) + 24;
    var max = niceMax(Math.max.apply(null, ents.map(function (e) { return e.diff_total; })));
    var scale = (W - left - right) / max;
    var out = ['<svg viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="' + esc(T.chart_by_class) + '">'];
    for (var t = 0; t <= 4; t++) {
      var x = left + (max * t / 4) * scale;
      out.push('<line class="grid" x1="' + x + '" x2="' + x + '" y1="' + top + '" y2="' + (H - 22) + '"/>');
      out.push(svgText(x, H - 6, num(max * t / 4), 'text-anchor="middle" font-size="11"'));
    }
    ents.forEach(function (e, i) {
      var y = top + i * (barH + gap);
      out.push(svgText(left - 10, y + barH / 2 + 4, e.label, 'text-anchor="end"'));
      var x = left;
      used.forEach(function (id) {
        var n = e.by_class[id] || 0;
        if (!n) return;
        var w = Math.max(n * scale, 2);
        out.push('<rect class="seg" x="' + x.toFixed(1) + '" y="' + y + '" width="' + w.toFixed(1) + '" height="' + barH +
          '" rx="3" fill="' + CLS[id].color + '"><title>' + esc(e.label + " · " + CLS[id].label + ": " + num(n)) + "</title></rect>");
        if (w > 26) out.push(svgText((x + w / 2).toFixed(1), y + barH / 2 + 4, num(n), 'text-anchor="middle" fill="#fff" style="fill:#fff;font-size:11px;font-weight:600"'));
        x += w;
      });
      out.push(svgText((x + 8).toFixed(1), y + barH / 2 + 4, num(e.diff_total), 'class="total"'));
    });
    out.push('<line class="axis" x1="' + left + '" x2="' + left + '" y1="' + top + '" y2="' + (H - 22) + '"/>');
    out.push("</svg>");
    el.innerHTML = out.join("") + legend(used);
  }

  function chartTrend() {
    var el = document.getElementById("chart-trend");
    var runs = D.trend;
    if (!runs.length) { emptyChart(el); return; }
    var used = D.classes.map(function (c) { return c.id; }).filter(function (id) {
      return runs.some(function (r) { return (r.by_class[id] || 0) > 0; });
    });
    var W = 640, H = 250, left = 44, right = 12, top = 18, bottom = 44;
    var max = niceMax(Math.max.apply(null, runs.map(function (r) { return r.total; }).concat([1])));
    var plotH = H - top - bottom, plotW = W - left - right;
    var slot = plotW / runs.length, bw = Math.min(46, slot * 0.62);
    var out = ['<svg viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="' + esc(D.trendTitle) + '">'];
    for (var t = 0; t <= 4; t++) {
      var y = top + plotH - (plotH * t / 4);
      out.push('<line class="grid" x1="' + left + '" x2="' + (W - right) + '" y1="' + y + '" y2="' + y + '"/>');
      out.push(svgText(left - 8, y + 4, num(max * t / 4), 'text-anchor="end" font-size="11"'));
    }
    runs.forEach(function (r, i) {
      var cx = left + slot * i + slot / 2, y = top + plotH;
      used.forEach(function (id) {
        var n = r.by_class[id] || 0;
        if (!n) return;
        var h = n / max * plotH;
        y -= h;
        out.push('<rect class="seg" x="' + (cx - bw / 2).toFixed(1) + '" y="' + y.toFixed(1) + '" width="' + bw.toFixed(1) + '" height="' +
          Math.max(h, 1).toFixed(1) + '" fill="' + CLS[id].color + '"><title>' + esc(r.run_id + " · " + CLS[id].label + ": " + num(n)) + "</title></rect>");
      });
      out.push(svgText(cx.toFixed(1), (y - 6).toFixed(1), num(r.total), 'text-anchor="middle" class="total"'));
      var current = r.run_id === D.run.run_id;
      out.push(svgText(cx.toFixed(1), H - bottom + 16, r.started_at.slice(5), 'text-anchor="middle" font-size="11"' + (current ? ' style="font-weight:700;fill:#17325c"' : "")));
      out.push(svgText(cx.toFixed(1), H - bottom + 30, r.trigger, 'text-anchor="middle" font-size="10" style="fill:#9aa5b5"'));
    });
    out.push('<line class="axis" x1="' + left + '" x2="' + (W - right) + '" y1="' + (top + plotH) + '" y2="' + (top + plotH) + '"/>');
    out.push("</svg>");
    el.innerHTML = out.join("") + legend(used.length ? used : []);
  }

  // ------------------------------------------------------------------ tables

  function Table(opts) {
    this.o = opts;
    this.rows = opts.rows;
    this.view = opts.rows;
    this.page = 0;
    this.sortKey = null;
    this.sortDir = 1;
    this.opened = {};
    this.build();
  }
  Table.prototype.build = function () {
    var o = this.o, self = this;
    var f = document.getElementById(o.filtersId);
    var html = [];
    (o.selects || []).forEach(function (s) {
      html.push('<label>' + esc(s.label) + ' <select id="' + s.id + '"><option value="">' + esc(T.all) + "</option>" +
        s.options.map(function (op) { return '<option value="' + esc(op[0]) + '">' + esc(op[1]) + "</option>"; }).join("") + "</select></label>");
    });
    html.push('<input type="search" id="' + o.searchId + '" placeholder="' + esc(T.search) + '">');
    html.push('<span class="countline" id="' + o.countId + '"></span>');
    f.innerHTML = html.join("");
    (o.selects || []).forEach(function (s) {
      document.getElementById(s.id).addEventListener("change", function () { self.apply(); });
    });
    document.getElementById(o.searchId).addEventListener("input", function () { self.apply(); });
    var box = document.getElementById(o.tableId);
    var head = o.columns.map(function (c, i) {
      return '<th class="sortable' + (c.num ? " num" : "") + '" data-i="' + i + '" aria-sort="none">' + esc(c.label) + '<span class="arrow">↕</span></th>';
    }).join("");
    box.innerHTML = '<div class="tablebox"><table><thead><tr>' + head + "</tr></thead><tbody></tbody></table></div>" +
      '<div class="pager"><button type="button" data-p="-1">' + esc(T.prev) + '</button><span class="pageinfo"></span><button type="button" data-p="1">' + esc(T.next) + "</button></div>";
    this.tbody = box.querySelector("tbody");
    box.querySelectorAll("th.sortable").forEach(function (th) {
      th.addEventListener("click", function () { self.sort(Number(th.getAttribute("data-i")), th); });
    });
    box.querySelectorAll(".pager button").forEach(function (b) {
      b.addEventListener("click", function () { self.page += Number(b.getAttribute("data-p")); self.render(); });
    });
    this.pageInfo = box.querySelector(".pageinfo");
    this.buttons = box.querySelectorAll(".pager button");
    this.tbody.addEventListener("click", function (ev) {
      var tr = ev.target.closest("tr.row");
      if (!tr || !o.drill) return;
      var id = tr.getAttribute("data-id");
      self.opened[id] = !self.opened[id];
      self.render();
    });
    this.apply();
  };
  Table.prototype.apply = function () {
    var o = this.o;
    var wanted = (o.selects || []).map(function (s) { return [s.key, document.getElementById(s.id).value]; });
    var q = document.getElementById(o.searchId).value.trim().toLowerCase();
    this.view = this.rows.filter(function (r) {
      for (var i = 0; i < wanted.length; i++) { if (wanted[i][1] && String(r[wanted[i][0]]) !== wanted[i][1]) return false; }
      if (!q) return true;
      return o.searchKeys.some(function (k) { return r[k] != null && String(r[k]).toLowerCase().indexOf(q) >= 0; });
    });
    if (this.sortKey != null) this.doSort();
    this.page = 0;
    this.render();
  };
  Table.prototype.sort = function (i, th) {
    var c = this.o.columns[i];
    if (this.sortKey === c.key) this.sortDir = -this.sortDir; else { this.sortKey = c.key; this.sortDir = 1; }
    this.sortNum = !!c.num;
    var ths = th.parentNode.children;
    for (var k = 0; k < ths.length; k++) { ths[k].setAttribute("aria-sort", "none"); ths[k].lastChild.textContent = "↕"; }
    th.setAttribute("aria-sort", this.sortDir > 0 ? "ascending" : "descending");
    th.lastChild.textContent = this.sortDir > 0 ? "▲" : "▼";
    this.doSort();
    this.page = 0;
    this.render();
  };
  Table.prototype.doSort = function () {
    var key = this.sortKey, dir = this.sortDir, asNum = this.sortNum;
    var sortKey = this.o.sortValue || function (r, k) { return r[k]; };
    this.view = this.view.slice().sort(function (a, b) {
      var x = sortKey(a, key), y = sortKey(b, key);
      if (x == null || x === "") return 1;
      if (y == null || y === "") return -1;
      if (asNum) return (Number(x) - Number(y)) * dir;
      return String(x).localeCompare(String(y), undefined, { numeric: true }) * dir;
    });
  };
  Table.prototype.render = function () {
    var o = this.o, self = this, size = o.pageSize || 50;
    var pages = Math.max(1, Math.ceil(this.view.length / size));
    this.page = Math.min(Math.max(0, this.page), pages - 1);
    var slice = this.view.slice(this.page * size, this.page * size + size);
    var html = slice.map(function (r) {
      var id = esc(r[o.idKey]);
      var tr = '<tr class="row' + (self.opened[r[o.idKey]] ? " open" : "") + '" data-id="' + id + '"' + (o.rowAttrs ? o.rowAttrs(r) : "") + ">" +
        o.columns.map(function (c) {
          var cls = [c.num ? "num" : "", c.cls || "", c.hl && c.hl(r) ? "hl" : ""].join(" ").trim();
          var body = c.render ? c.render(r) : nullCell(r[c.key]);
          // table cells ignore max-width; a block inside them does not
          if (/\b(wrap|detail)\b/.test(cls)) body = "<div>" + body + "</div>";
          return "<td" + (cls ? ' class="' + cls + '"' : "") + ">" + body + "</td>";
        }).join("") + "</tr>";
      if (o.drill && self.opened[r[o.idKey]]) tr += '<tr class="drill"><td colspan="' + o.columns.length + '">' + o.drill(r) + "</td></tr>";
      return tr;
    }).join("");
    this.tbody.innerHTML = html || '<tr><td colspan="' + o.columns.length + '" class="muted" style="text-align:center;padding:24px">' + esc(T.no_rows) + "</td></tr>";
    var count = fmt(T.showing, { shown: num(this.view.length), total: num(this.rows.length) });
    // Only part of the rows is embedded: say so by the counter, with the real total.
    if (o.fullTotal > this.rows.length && o.truncNote) count += " · " + o.truncNote;
    document.getElementById(o.countId).textContent = count;
    this.pageInfo.textContent = fmt(T.page, { page: this.page + 1, pages: pages });
    this.buttons[0].disabled = this.page === 0;
    this.buttons[1].disabled = this.page >= pages - 1;
  };

  // ------------------------------------------------------------------ differences

  var diffs = rowsOf(D.diffs);
  diffs.forEach(function (r) { r.entity_label = ENT[r.entity] ? ENT[r.entity].short : r.entity; });

  function drillDiff(r) {
    var cells = [["ERP", r.erp_value], ["OA", r.oa_value], [T.target_value, r.target_value]];
    var mism = r["class"] === "field_mismatch";
    var html = '<div class="cols">' + cells.map(function (c, i) {
      return '<div class="val' + (mism && i < 2 ? " diff" : "") + '"><div class="h">' + esc(c[0]) + '</div><div class="v">' + nullCell(c[1]) + "</div></div>";
    }).join("") + "</div>";
    html += "<dl>";
    html += "<dt>" + esc(T.detail) + "</dt><dd>" + esc(r.detail_text) + "</dd>";
    if (r.golden != null) html += "<dt>" + esc(T.golden) + "</dt><dd class=\"mono\">" + esc(r.golden) + "</dd>";
    html += "<dt>" + esc(T.diff_id) + '</dt><dd class="mono">' + esc(r.diff_id) + "</dd>";
    html += "<dt>" + esc(T.first_seen) + "</dt><dd>" + esc(r.first_seen_at) + ' <span class="muted mono">' + esc(r.first_run_id) + "</span></dd>";
    html += "<dt>" + esc(T.last_seen) + "</dt><dd>" + esc(r.last_seen_at) + ' <span class="muted mono">' + esc(r.last_run_id) + "</span></dd>";
    html += "<dt>" + esc(T.status) + "</dt><dd>" + statusPill(r.status) + (r.signed_by ? " " + esc(r.signed_by) + " · " + esc(r.signed_at || "") : "") + "</dd>";
    if (r.note) html += "<dt>" + esc(T.note) + "</dt><dd>" + esc(r.note) + "</dd>";
    html += "</dl>";
    if (r.record) {
      html += '<div class="muted" style="font-size:12px;margin-bottom:2px">' + esc(T.record) + '</div><table class="rec"><tbody>' +
        Object.keys(r.record).map(function (k) {
          return "<tr><td class=\"muted\">" + fieldLabel(r.entity, k) + '</td><td class="mono">' + nullCell(r.record[k]) + "</td></tr>";
        }).join("") + "</tbody></table>";
    }
    html += '<div class="muted" style="font-size:12px;margin-bottom:4px">' + esc(T.signoff_hint) + "</div><code>erpoa reconcile accept " +
      esc(r.diff_id) + " --by " + esc(D.signer) + "</code>";
    return html;
  }

  var classOptions = D.classes.filter(function (c) { return diffs.some(function (r) { return r["class"] === c.id; }); })
    .map(function (c) { return [c.id, c.label]; });
  new Table({
    rows: diffs,
    idKey: "diff_id",
    filtersId: "diff-filters",
    tableId: "diff-table",
    searchId: "diff-search",
    countId: "diff-count",
    fullTotal: D.diffs.total,
    truncNote: D.diffs.note,
    pageSize: 50,
    selects: [
      { id: "diff-filter-entity", key: "entity", label: T.entity, options: D.entities.filter(function (e) { return e.diff_total; }).map(function (e) { return [e.entity, e.label]; }) },
      { id: "diff-filter-class", key: "class", label: T["class"], options: classOptions },
      { id: "diff-filter-status", key: "status", label: T.status, options: D.diffStatuses.map(function (s) { return [s, D.statuses[s] || s]; }) }
    ],
    searchKeys: ["golden_key", "field", "erp_value", "oa_value", "target_value", "detail_text", "diff_id", "signed_by"],
    rowAttrs: function (r) { return ' data-class="' + esc(r["class"]) + '" data-status="' + esc(r.status) + '" data-entity="' + esc(r.entity) + '"'; },
    sortValue: function (r, k) { return k === "class" ? (CLS[r[k]] || {}).order : r[k]; },
    columns: [
      { key: "class", label: T["class"], cls: "nowrap", render: function (r) { return chip(r["class"], r.class_label) + (r["new"] ? '<span class="badge-new">' + esc(T["new"]) + "</span>" : ""); } },
      { key: "entity_label", label: T.entity, cls: "nowrap" },
      { key: "golden_key", label: T.golden_key, cls: "mono nowrap" },
      { key: "field", label: T.field, render: function (r) { return fieldLabel(r.entity, r.field); } },
      { key: "erp_value", label: T.erp_value, cls: "mono wrap", hl: function (r) { return r["class"] === "field_mismatch"; } },
      { key: "oa_value", label: T.oa_value, cls: "mono wrap", hl: function (r) { return r["class"] === "field_mismatch"; } },
      { key: "target_value", label: T.target_value, cls: "mono wrap", hl: function (r) { return r["class"] === "target_drift" && r.field; } },
      { key: "detail_text", label: T.detail, cls: "detail" },
      { key: "first_seen_at", label: T.first_seen, cls: "nowrap", render: function (r) { return nullCell((r.first_seen_at || "").slice(0, 10)); } },
      { key: "run_count", label: T.run_count, num: true },
      { key: "status", label: T.status, render: function (r) { return statusPill(r.status); } },
      { key: "signed_by", label: T.signed_by }
    ],
    drill: drillDiff
  });

  // ------------------------------------------------------------------ quarantine and gaps

  function sourceIds(v) {
    if (typeof v !== "string" || v.charAt(0) !== "{") return v;
    try {
      var ids = JSON.parse(v);
      return Object.keys(ids).map(function (k) { return k.toUpperCase() + " " + ids[k]; }).join(" · ");
    } catch (e) { return v; }
  }

  var q = rowsOf(D.quarantine);
  q.forEach(function (r) { r.entity_label = ENT[r.entity] ? ENT[r.entity].short : r.entity; });
  var rules = {};
  q.forEach(function (r) { rules[r.rule] = true; });
  new Table({
    rows: q,
    idKey: "id",
    filtersId: "q-filters",
    tableId: "q-table",
    searchId: "q-search",
    countId: "q-count",
    fullTotal: D.quarantine.total,
    truncNote: D.quarantine.note,
    pageSize: 25,
    selects: [
      { id: "q-filter-entity", key: "entity", label: T.entity, options: D.entities.map(function (e) { return [e.entity, e.label]; }) },
      { id: "q-filter-rule", key: "rule", label: T.rule, options: Object.keys(rules).sort().map(function (x) { return [x, x]; }) }
    ],
    searchKeys: ["src_id", "golden_key", "field", "rule", "value", "reason", "run_id"],
    columns: [
      { key: "entity_label", label: T.entity },
      { key: "source", label: T.source, render: function (r) { return esc(String(r.source || "").toUpperCase()); } },
      { key: "src_id", label: T.src_id, cls: "mono wrap", render: function (r) { return nullCell(sourceIds(r.src_id)); } },
      { key: "golden_key", label: T.golden_key, cls: "mono" },
      { key: "field", label: T.field, render: function (r) { return fieldLabel(r.entity, r.field); } },
      { key: "rule", label: T.rule, cls: "mono wrap" },
      { key: "value", label: T.value, cls: "mono wrap" },
      { key: "reason", label: T.reason, cls: "detail" },
      { key: "run_id", label: T.run_id, cls: "mono muted nowrap" },
      { key: "status", label: T.status }
    ]
  });

  var gaps = rowsOf(D.gaps);
  gaps.forEach(function (r, i) { r._id = i; r.entity_label = ENT[r.entity] ? ENT[r.entity].short : r.entity; });
  new Table({
    rows: gaps,
    idKey: "_id",
    filtersId: "gap-filters",
    tableId: "gap-table",
    searchId: "gap-search",
    countId: "gap-count",
    pageSize: 25,
    selects: [{ id: "gap-filter-entity", key: "entity", label: T.entity, options: D.entities.map(function (e) { return [e.entity, e.label]; }) }],
    searchKeys: ["field", "value", "code_table", "policy"],
    columns: [
      { key: "entity_label", label: T.entity },
      { key: "source", label: T.source, render: function (r) { return esc(String(r.source || "").toUpperCase()); } },
      { key: "field", label: T.field, render: function (r) { return fieldLabel(r.entity, r.field); } },
      { key: "value", label: T.value, cls: "mono" },
      { key: "code_table", label: T.code_table, cls: "mono" },
      { key: "policy", label: T.policy },
      { key: "count", label: T.count, num: true }
    ]
  });

  chartByClass();
  chartTrend();
  document.documentElement.setAttribute("data-ready", "1");
})();
