/*
 * base.js: the viewer's first part (analysis/viewer/*.js are one script, concatenated in this order by
 * embed.py inside one function: base, timeline, phases, flame, segments, diff, report, main). The data, read once
 * from <script id="cmt-data"> (its shape: analysis/html.h), and the small helpers every part uses: DOM
 * building through textContent only (strings come from traces and are never parsed as HTML), exact and human
 * units, colours, tables, canvases.
 *
 * Plain JavaScript; fetches nothing. Embedded into the cumemtrace executable at build time.
 */
  var D = JSON.parse(document.getElementById('cmt-data').textContent);
  var app = document.getElementById('cmt-app');
  app.textContent = '';

  /* ---- small helpers ---- */
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'cls') e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function add(parent, tag, attrs, kids) { var e = el(tag, attrs, kids); parent.appendChild(e); return e; }
  function exact(n) { return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ','); }
  function human(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'], i = 0, v = Math.abs(n);
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    var s = i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0);
    return (n < 0 ? '-' : '') + s + ' ' + u[i];
  }
  function bytesText(n) { return exact(n) + ' bytes (' + human(n) + ')'; }
  function timeText(ns) {
    var a = Math.abs(ns);
    if (a >= 1e9) return (ns / 1e9).toFixed(3) + ' s';
    if (a >= 1e6) return (ns / 1e6).toFixed(3) + ' ms';
    if (a >= 1e3) return (ns / 1e3).toFixed(1) + ' us';
    return Math.round(ns) + ' ns';
  }
  function signed(n) { return (n > 0 ? '+' : n < 0 ? '-' : '') + human(Math.abs(n)); }
  var S = D.strings || [], STK = D.stacks || [], COMPS = D.components || [], APIS = D.apis || [], KINDS = D.kinds || [];
  function frames(ix) { return ix >= 0 && STK[ix] ? STK[ix].f.map(function (f) { return S[f]; }) : ['[no stack]']; }
  /* Source locations (a stack's "l", analysis/html.h; schema version 4 traces with DWARF): a stack's frames as
   * shown, innermost first, each function inlined into a frame just before it (as the text report lists them):
   * {name, file (as recorded, '' unknown), line (0 unknown), inlined}. Without "l", exactly frames(ix). */
  function baseName(p) { var i = p.lastIndexOf('/'); return i >= 0 ? p.slice(i + 1) : p; }
  function srcFrames(ix) {
    var st = ix >= 0 ? STK[ix] : null;
    if (!st) return [{name: '[no stack]', file: '', line: 0, inlined: false}];
    var out = [];
    st.f.forEach(function (f, i) {
      var l = st.l ? st.l[i] : 0;
      if (l) for (var k = 2; k + 2 < l.length; k += 3) out.push({name: S[l[k]], file: l[k + 1] >= 0 ? S[l[k + 1]] : '', line: l[k + 2], inlined: true});
      out.push({name: S[f], file: l && l[0] >= 0 ? S[l[0]] : '', line: l ? l[1] : 0, inlined: false});
    });
    return out;
  }
  /* "file.c:12" (the file's base name, as the text report shows it), '' when the file is unknown; full: the path */
  function locText(x, full) { return x.file ? (full ? x.file : baseName(x.file)) + (x.line > 0 ? ':' + x.line : '') : ''; }
  /* A frame in lists (the stack panel, tables): "function  file.c:12", inlined ones marked "[inlined]". */
  function frameText(x) { return x.name + (x.file ? '  ' + locText(x) : '') + (x.inlined ? '  [inlined]' : ''); }
  /* A frame as a flame graph names it: "function (file.c:12)", as the text report and `cumemtrace flame` do. */
  function flameName(x) { return x.name + (x.file ? ' (' + locText(x) + ')' : '') + (x.inlined ? ' [inlined]' : ''); }
  function frameLines(ix) { return srcFrames(ix).map(frameText); }
  /* The same for the report model's stacks (report --json: "stack" and, parallel, "stack_frames"). */
  function modelLines(stack, sf) {
    if (!sf || sf.length !== (stack || []).length) return stack;
    var out = [];
    stack.forEach(function (name, i) {
      var x = sf[i] || {};
      (x.inlined || []).forEach(function (y) { out.push(frameText({name: y.function || '??', file: y.file || '', line: y.line || 0, inlined: true})); });
      out.push(frameText({name: name, file: x.file || '', line: x.line || 0, inlined: false}));
    });
    return out;
  }
  var PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7', '#9c755f', '#e15759',
    '#86bcb6', '#bab0ac', '#d37295', '#8cd17d', '#b6992d', '#499894', '#a0cbe8'];
  function hash(s) { var h = 2166136261; for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); } return h >>> 0; }
  function hue(i, l) { return 'hsl(' + (hash(String(i)) % 360) + ',55%,' + (l || 62) + '%)'; }
  function table(head, rows) {
    var t = el('table', {cls: 't'}), tr = add(t, 'tr');
    head.forEach(function (h) { add(tr, 'th', {text: h}); });
    rows.forEach(function (r) {
      var row = add(t, 'tr');
      r.forEach(function (c) {
        if (c && typeof c === 'object' && 'cell' in c) add(row, 'td', {cls: c.cls || '', text: c.cell});
        else add(row, 'td', {cls: typeof c === 'number' ? 'n' : '', text: c == null ? '' : String(c)});
      });
    });
    return t;
  }
  function stackCell(fr, max) {
    if (!fr || !fr.length) return {cell: '[no stack]', cls: 'stack'};
    var f = fr.slice(0, max || 12);
    if (fr.length > f.length) f.push('... ' + (fr.length - f.length) + ' more frames');
    return {cell: f.join('\n'), cls: 'stack'};
  }
  function dpr() { return window.devicePixelRatio || 1; }
  function fitCanvas(c) {
    var w = c.clientWidth || 800, h = c.clientHeight || 100, r = dpr();
    if (c.width !== Math.round(w * r) || c.height !== Math.round(h * r)) { c.width = Math.round(w * r); c.height = Math.round(h * r); }
    var g = c.getContext('2d');
    g.setTransform(r, 0, 0, r, 0, 0);
    return {g: g, w: w, h: h};
  }
  function niceStep(range, n) {
    var raw = range / n, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }
  function niceBytesStep(range, n) {
    var raw = range / n, p = Math.pow(2, Math.floor(Math.log2(Math.max(raw, 1))));
    return raw / p > 2.5 ? p * 4 : raw / p > 1.2 ? p * 2 : p;
  }
  var runs = D.runs || [];
