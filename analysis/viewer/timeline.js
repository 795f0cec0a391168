/*
 * timeline.js: memory over time with each allocation as a band, stacked oldest at the bottom like PyTorch's
 * memory_viz active-memory timeline, the allocations below the detail threshold as one hatched "other" band;
 * zoom (wheel), pan (drag), the overview strip and its brush; the panel with the hovered or pinned allocation.
 */
  /* One level of one run, prepared for drawing: events in time order with each band's position in it. */
  function prepare(run, lv) {
    var n = lv.start.length, ev = new Array(2 * n);
    for (var i = 0; i < n; i++) { ev[2 * i] = i; ev[2 * i + 1] = -(i + 1); }
    var st = lv.start, en = lv.end;
    ev.sort(function (a, b) {
      var ta = a >= 0 ? st[a] : en[-a - 1], tb = b >= 0 ? st[b] : en[-b - 1];
      if (ta !== tb) return ta - tb;
      var fa = a < 0 ? 0 : 1, fb = b < 0 ? 0 : 1; /* at one instant: frees first, except a band's own */
      if (fa !== fb) {
        var ia = a >= 0 ? a : -a - 1, ib = b >= 0 ? b : -b - 1;
        if (ia === ib) return a >= 0 ? -1 : 1;
        return fa - fb;
      }
      return (a >= 0 ? a : -a - 1) - (b >= 0 ? b : -b - 1);
    });
    var evT = new Float64Array(2 * n), evB = new Int32Array(2 * n), aIx = new Int32Array(n), fIx = new Int32Array(n),
      cum = new Float64Array(2 * n), tot = 0;
    for (var k = 0; k < 2 * n; k++) {
      var b = ev[k];
      evB[k] = b;
      if (b >= 0) { evT[k] = st[b]; aIx[b] = k; tot += lv.size[b]; } else { evT[k] = en[-b - 1]; fIx[-b - 1] = k; tot -= lv.size[-b - 1]; }
      cum[k] = tot;
    }
    var ymax = 1;
    lv.total.forEach(function (p) { if (p[1] > ymax) ymax = p[1]; });
    return {run: run, lv: lv, n: n, evT: evT, evB: evB, aIx: aIx, fIx: fIx, cum: cum, ymax: ymax,
      dur: Math.max(run.duration_ns, 1)};
  }
  function otherAt(P, t) {
    var lv = P.lv;
    if (!lv.other_bytes || !lv.other_bytes.length) return {bytes: 0, count: 0, k: -1};
    var k = Math.floor(t / lv.bucket_ns);
    if (k < 0) k = 0;
    if (k >= lv.other_bytes.length) k = lv.other_bytes.length - 1;
    return {bytes: lv.other_bytes[k], count: lv.other_count[k], k: k};
  }
  function lowerBound(a, v) { var lo = 0, hi = a.length; while (lo < hi) { var m = (lo + hi) >> 1; if (a[m] < v) lo = m + 1; else hi = m; } return lo; }

  var TL = null; /* the timeline's state */

  function buildTimeline(sec) {
    sec.id = 'cmt-timeline';
    add(sec, 'h2', {text: 'Memory over time: every allocation a band'});
    var ctl = add(sec, 'div', {cls: 'controls'});
    var runSel = null;
    if (runs.length > 1) {
      runSel = add(ctl, 'label', {text: 'run '});
      var rs = add(runSel, 'select', {id: 'cmt-run'});
      runs.forEach(function (r, i) { add(rs, 'option', {value: i, text: 'AB'[i] + ': ' + r.label}); });
      runSel = rs;
    }
    var lvLab = add(ctl, 'label', {text: 'level '}), lvSel = add(lvLab, 'select', {id: 'cmt-level'});
    var colLab = add(ctl, 'label', {text: 'colour by '}), colSel = add(colLab, 'select', {id: 'cmt-colour'});
    ['component', 'stack', 'module'].forEach(function (c) { add(colSel, 'option', {value: c, text: c}); });
    var reset = add(ctl, 'button', {id: 'cmt-reset', text: 'whole run'});
    var range = add(ctl, 'span', {id: 'cmt-range', cls: 'dim'});
    var info = add(ctl, 'span', {id: 'cmt-levelinfo', cls: 'dim'});
    var row = add(sec, 'div', {cls: 'tl'}), plots = add(row, 'div', {cls: 'tl-plots'});
    var main = add(plots, 'canvas', {id: 'cmt-bands'}), over = add(plots, 'canvas', {id: 'cmt-overview'});
    var phasesAt = over;
    var legend = add(plots, 'div', {cls: 'legend', id: 'cmt-legend'});
    add(plots, 'div', {cls: 'dim', text: 'wheel: zoom; drag: pan; drag over the strip below: choose a range; ' +
      'double-click: whole run; hover a band for its stack, click to pin it (Escape unpins).'});
    var detail = add(row, 'div', {cls: 'detail', id: 'cmt-detail'});
    add(detail, 'div', {cls: 'dim', text: 'Hover over a band to see its allocation.'});

    TL = {main: main, over: over, detail: detail, range: range, legend: legend, info: info, colour: 'component',
      run: 0, level: 'driver', v0: 0, v1: 1, P: null, hover: -2, pinned: -2, samples: null, margin: 64};
    buildPhases(plots, phasesAt);
    var first = true;
    /* PyTorch traces open on the allocator's blocks (they carry the Python frames) unless the verb said otherwise */
    TL.level = D.level || (runs[0].levels.allocator ? 'allocator' : 'driver');
    function levels() {
      lvSel.textContent = '';
      var lvs = runs[TL.run].levels;
      Object.keys(lvs).forEach(function (k) {
        add(lvSel, 'option', {value: k, text: k === 'driver' ? 'driver allocations (device memory)' : 'allocator blocks (PyTorch)'});
      });
      if (!lvs[TL.level]) TL.level = 'driver';
      lvSel.value = TL.level;
    }
    function load() {
      var run = runs[TL.run], lv = run.levels[TL.level];
      TL.P = prepare(run, lv);
      /* by component when the rules tell the bytes apart (no component holds 80 % of them), else by stack */
      var comps = {}, all = 0, most = 0;
      for (var i = 0; i < lv.stack.length; i++) {
        var ci = lv.stack[i] >= 0 ? STK[lv.stack[i]].c : -1;
        comps[ci] = (comps[ci] || 0) + lv.size[i];
        all += lv.size[i];
        if (comps[ci] > most) most = comps[ci];
      }
      TL.colour = colSel.value = D.colour && first ? D.colour : most <= 0.8 * all ? 'component' : 'stack';
      first = false;
      TL.v0 = 0; TL.v1 = TL.P.dur; TL.hover = -2; TL.pinned = -2;
      info.textContent = exact(lv.allocs) + ' allocations: ' + exact(lv.allocs - lv.merged_allocs) + ' drawn one by one' +
        (lv.merged_allocs ? ', ' + exact(lv.merged_allocs) + ' below ' + human(lv.threshold_bytes) + ' merged into "other"' : '');
      showDetail(-2);
      showRange();
      drawNow();
      if (FLAME) buildFlame(run, lv, FLAME);
    }
    levels();
    load();
    if (runSel) runSel.addEventListener('change', function () { TL.run = +runSel.value; levels(); load(); });
    lvSel.addEventListener('change', function () { TL.level = lvSel.value; load(); });
    colSel.addEventListener('change', function () { TL.colour = colSel.value; draw(); });
    reset.addEventListener('click', function () { setView(0, TL.P.dur); });

    /* zoom, pan, brush */
    function tOfX(x, w) { return TL.v0 + (x - TL.margin) / (w - TL.margin - 8) * (TL.v1 - TL.v0); }
    main.addEventListener('wheel', function (e) {
      e.preventDefault();
      var w = main.clientWidth, t = tOfX(e.offsetX, w), f = Math.exp(e.deltaY * 0.0015);
      var span = Math.min(Math.max((TL.v1 - TL.v0) * f, 1000), TL.P.dur);
      var a = (t - TL.v0) / (TL.v1 - TL.v0);
      setView(t - a * span, t - a * span + span);
    }, {passive: false});
    var drag = null;
    main.addEventListener('mousedown', function (e) { drag = {x: e.offsetX, v0: TL.v0, v1: TL.v1, moved: false}; });
    window.addEventListener('mouseup', function (e) {
      if (drag && !drag.moved && e.target === main) {
        var h = hit(e.offsetX, e.offsetY);
        TL.pinned = TL.pinned === h || h === -2 ? -2 : h;
        showDetail(TL.pinned !== -2 ? TL.pinned : h);
        draw();
      }
      drag = null;
    });
    main.addEventListener('mousemove', function (e) {
      if (drag && Math.abs(e.offsetX - drag.x) > 3) drag.moved = true;
      if (drag && drag.moved) {
        var w = main.clientWidth, dt = (e.offsetX - drag.x) / (w - TL.margin - 8) * (drag.v1 - drag.v0);
        setView(drag.v0 - dt, drag.v1 - dt);
        return;
      }
      var h = hit(e.offsetX, e.offsetY), key = h === -1 ? 'o' + TL.hitSample : h;
      if (key !== TL.hoverKey) {
        TL.hover = h;
        TL.hoverKey = key;
        if (TL.pinned === -2) showDetail(h);
        draw();
      }
    });
    main.addEventListener('dblclick', function () { setView(0, TL.P.dur); });
    var brush = null;
    function tOver(x) { var w = over.clientWidth; return (x - TL.margin) / (w - TL.margin - 8) * TL.P.dur; }
    over.addEventListener('mousedown', function (e) { brush = {a: tOver(e.offsetX), b: tOver(e.offsetX)}; });
    over.addEventListener('mousemove', function (e) { if (brush) { brush.b = tOver(e.offsetX); drawOverview(brush); } });
    window.addEventListener('mouseup', function (e) {
      if (!brush) return;
      if (e.target !== over) { brush = null; drawOverview(null); return; }
      var a = Math.min(brush.a, brush.b), b = Math.max(brush.a, brush.b), span = TL.v1 - TL.v0;
      brush = null;
      if (b - a < TL.P.dur / 500) setView(a - span / 2, a + span / 2); /* a click: centre there */
      else setView(a, b);
    });
    window.addEventListener('resize', function () { draw(); });
    window.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && TL.pinned !== -2) { TL.pinned = -2; showDetail(TL.hover); draw(); }
    });
  }

  function setView(a, b) {
    var dur = TL.P.dur, span = Math.min(Math.max(b - a, 1000), dur);
    if (a < 0) a = 0;
    if (a + span > dur) a = dur - span;
    TL.v0 = a; TL.v1 = a + span;
    showRange();
    draw();
  }
  function showRange() {
    TL.range.textContent = 'showing ' + timeText(TL.v0) + ' to ' + timeText(TL.v1) + ' of ' + timeText(TL.P.dur);
    TL.range.setAttribute('data-t0', String(Math.round(TL.v0)));
    TL.range.setAttribute('data-t1', String(Math.round(TL.v1)));
  }

  /* Redraws once per frame however many events asked for it (a large trace takes a while to draw). */
  var drawPending = false;
  function draw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(function () { drawPending = false; drawNow(); });
  }

  function bandColour(i) {
    var P = TL.P, lv = P.lv, s = lv.stack[i];
    if (TL.colour === 'stack') return hue('s' + (s >= 0 ? STK[s].f.join(',') : 'none'));
    if (TL.colour === 'module') return hue('m' + (s >= 0 ? STK[s].m : -1), 58);
    return PALETTE[(s >= 0 ? STK[s].c : COMPS.length - 1) % PALETTE.length];
  }

  /* Draws the bands of [v0, v1]: per 2-pixel sample, the live bands at the moment of the sample's highest
   * total (so the peak is drawn), stacked oldest first above the "other" band; runs of equal offset merge. */
  function drawNow() {
    var P = TL.P, lv = P.lv, f = fitCanvas(TL.main), g = f.g, W = f.w, H = f.h, L = TL.margin, R = 8, T = 8, B = 22;
    var pw = W - L - R, ph = H - T - B, v0 = TL.v0, v1 = TL.v1, span = v1 - v0;
    var ymax = Math.max(P.ymax, P.run.peak_bytes || 0, 1) * 1.04;
    function X(t) { return L + (t - v0) / span * pw; }
    function Y(v) { return T + ph - v / ymax * ph; }
    g.clearRect(0, 0, W, H);
    g.fillStyle = '#fff'; g.fillRect(L, T, pw, ph);
    var ns = Math.max(1, Math.floor(pw / 2)), dt = span / ns;
    var n = P.n, prev = new Int32Array(n + 1), next = new Int32Array(n + 1), HEAD = n; /* circular list, HEAD sentinel */
    prev[HEAD] = HEAD; next[HEAD] = HEAD;
    function ins(b) { var t = prev[HEAD]; next[t] = b; prev[b] = t; next[b] = HEAD; prev[HEAD] = b; }
    function del(b) { next[prev[b]] = next[b]; prev[next[b]] = prev[b]; }
    function apply(k) { var b = P.evB[k]; if (b >= 0) ins(b); else del(-b - 1); }
    var k = 0, ne = P.evT.length, lo = lowerBound(P.evT, v0);
    for (; k < lo; k++) apply(k);
    /* Each sample is a column of segments [y bottom, y top, colour, one band?, highlighted?]: neighbouring bands
     * of one colour, and bands thinner than a pixel, share a segment; equal neighbouring columns share rects. */
    var hl = [], samples = new Array(ns), colours = {}, prevCol = null, runStart = 0, OTHER = otherFill(g);
    function colourOf(b) { var c = colours[b]; if (c === undefined) c = colours[b] = bandColour(b); return c; }
    function flushRun(sEnd) {
      if (!prevCol) return;
      var x0 = X(v0 + runStart * dt), w = Math.max(X(v0 + sEnd * dt) - x0, 0.5);
      for (var q = 0; q < prevCol.length; q += 5) {
        var yb = prevCol[q], yt = prevCol[q + 1], h = Math.max(yb - yt, 0.5);
        g.fillStyle = prevCol[q + 2];
        g.fillRect(x0, yt, w, h);
        if (prevCol[q + 3] && h > 4) { g.fillStyle = 'rgba(255,255,255,0.7)'; g.fillRect(x0, yt, w, 1); } /* band edge */
        if (prevCol[q + 4]) hl.push([x0, yt, w, h]);
      }
    }
    function sameCol(a, b) {
      if (!a || a.length !== b.length) return false;
      for (var q = 0; q < a.length; q++) if (a[q] !== b[q]) return false;
      return true;
    }
    for (var s = 0; s < ns; s++) {
      var a = v0 + s * dt, bnd = a + dt, j = k;
      while (j < ne && P.evT[j] < bnd) j++;
      /* the sample's moment: the event after which the total is highest (or its start) */
      var best = k > 0 ? P.cum[k - 1] : 0, m = k - 1;
      for (var q = k; q < j; q++) if (P.cum[q] > best) { best = P.cum[q]; m = q; }
      for (; k <= m; k++) apply(k);
      var oth = otherAt(P, m >= 0 ? Math.max(P.evT[m], a) : a), off = oth.bytes, col = [];
      samples[s] = {m: k - 1, base: off, other: oth};
      if (off > 0) col.push(Y(0), Y(off), OTHER, 0, 0);
      var segB = 0, segT = 0, segC = null, nb = 0;
      for (var b = next[HEAD]; b !== HEAD; b = next[b]) {
        var yb = Y(off), yt = Y(off + lv.size[b]), c = colourOf(b);
        off += lv.size[b];
        if (b === TL.hover || b === TL.pinned) {
          if (nb) col.push(segB, segT, segC, nb === 1 ? 1 : 0, 0);
          col.push(yb, yt, c, 1, 1);
          nb = 0;
        } else if (nb && (segB - segT < 1 || (c === segC && yb - yt < 2))) { /* thin: share; else its own edge */
          segT = yt; nb++;
        } else {
          if (nb) col.push(segB, segT, segC, nb === 1 ? 1 : 0, 0);
          segB = yb; segT = yt; segC = c; nb = 1;
        }
      }
      if (nb) col.push(segB, segT, segC, nb === 1 ? 1 : 0, 0);
      if (!sameCol(prevCol, col)) { flushRun(s); prevCol = col; runStart = s; }
      for (; k < j; k++) apply(k);
    }
    flushRun(ns);
    TL.samples = samples;
    g.strokeStyle = '#000'; g.lineWidth = 1.5;
    hl.forEach(function (r) { g.strokeRect(r[0], r[1], r[2], r[3]); });
    /* the exact total: each bucket's highest and last state */
    g.strokeStyle = '#222'; g.lineWidth = 1; g.beginPath();
    var tp = lv.total, started = false, lastY = Y(0);
    for (var i = 0; i < tp.length; i++) {
      var x = X(tp[i][0]), y = Y(tp[i][1]);
      if (tp[i][0] < v0 && i + 1 < tp.length && tp[i + 1][0] < v0) { lastY = y; continue; }
      if (!started) { g.moveTo(L, i && tp[i][0] > v0 ? lastY : y); started = true; }
      g.lineTo(Math.max(x, L), lastY); g.lineTo(Math.max(x, L), y); lastY = y;
      if (tp[i][0] > v1) break;
    }
    g.save(); g.beginPath(); g.rect(L, 0, pw, H); g.clip(); g.stroke(); g.restore();
    /* peak and failures */
    if (TL.level === 'driver' && P.run.peak_bytes > 0 && P.run.peak_ns >= v0 && P.run.peak_ns <= v1) {
      g.strokeStyle = '#c0392b'; g.setLineDash([4, 3]); g.beginPath();
      g.moveTo(X(P.run.peak_ns), T); g.lineTo(X(P.run.peak_ns), T + ph); g.stroke(); g.setLineDash([]);
      g.fillStyle = '#c0392b'; g.font = '11px sans-serif';
      /* beside the peak: the phases open at it (ranges_at_peak), outermost first */
      var inR = (P.run.ranges_at_peak || []).length ? ' in ' + P.run.ranges_at_peak.join(' > ') : '', pl = 'peak ' + human(P.run.peak_bytes) + inR;
      g.fillText(pl, Math.max(Math.min(X(P.run.peak_ns) + 3, W - 8 - g.measureText(pl).width), L + 2), T + 11);
    }
    P.run.failures.forEach(function (fl) {
      if (fl.ts_ns < v0 || fl.ts_ns > v1) return;
      var x = X(fl.ts_ns);
      g.fillStyle = '#c0392b'; g.beginPath(); g.moveTo(x - 5, T + ph); g.lineTo(x + 5, T + ph); g.lineTo(x, T + ph - 9); g.fill();
    });
    /* axes */
    g.fillStyle = '#fff'; g.fillRect(0, 0, L, H); g.fillRect(L + pw, 0, R, H); g.fillRect(0, T + ph, W, B);
    g.strokeStyle = '#999'; g.strokeRect(L, T, pw, ph);
    g.fillStyle = '#444'; g.font = '11px sans-serif'; g.textAlign = 'right';
    var ys = niceBytesStep(ymax, 5);
    for (var yv = 0; yv <= ymax; yv += ys) { g.fillText(human(yv), L - 4, Y(yv) + 4); g.fillRect(L - 3, Y(yv), 3, 1); }
    g.textAlign = 'center';
    var xs = niceStep(span, 8);
    for (var xv = Math.ceil(v0 / xs) * xs; xv <= v1; xv += xs) { g.fillText(timeText(xv), X(xv), T + ph + 15); g.fillRect(X(xv), T + ph, 1, 3); }
    g.textAlign = 'left';
    /* the axes, for tests and tools: plot box (left, right, top, bottom margins in CSS px) and the byte scale */
    TL.main.setAttribute('data-plot', [L, R, T, B].join(','));
    TL.main.setAttribute('data-ymax', String(ymax));
    showRange();
    drawOverview(null);
    drawLegend();
    drawPhases();
  }

  function drawOverview(brush) {
    var P = TL.P, f = fitCanvas(TL.over), g = f.g, W = f.w, H = f.h, L = TL.margin, pw = W - L - 8, ph = H - 4;
    var ymax = Math.max(P.ymax, 1) * 1.04;
    function X(t) { return L + t / P.dur * pw; }
    g.clearRect(0, 0, W, H);
    g.fillStyle = '#dfe8f3'; g.strokeStyle = '#4e79a7'; g.beginPath(); g.moveTo(L, H - 2);
    var last = H - 2;
    P.lv.total.forEach(function (p) { var y = H - 2 - p[1] / ymax * ph; g.lineTo(X(p[0]), last); g.lineTo(X(p[0]), y); last = y; });
    g.lineTo(L + pw, last); g.lineTo(L + pw, H - 2); g.closePath(); g.fill(); g.stroke();
    g.fillStyle = 'rgba(0,0,0,0.12)';
    g.fillRect(L, 0, X(TL.v0) - L, H); g.fillRect(X(TL.v1), 0, L + pw - X(TL.v1), H);
    g.strokeStyle = '#222'; g.strokeRect(X(TL.v0), 0.5, Math.max(X(TL.v1) - X(TL.v0), 1), H - 1);
    if (brush) { g.fillStyle = 'rgba(242,142,43,0.3)'; g.fillRect(X(Math.min(brush.a, brush.b)), 0, Math.abs(X(brush.b) - X(brush.a)), H); }
    g.fillStyle = '#444'; g.font = '11px sans-serif'; g.fillText('overview', 4, 14);
    TL.over.setAttribute('data-plot', L + ',8');  /* left and right margins; the whole run across */
    TL.over.setAttribute('data-dur', String(P.dur));
  }

  /* The merged band: grey hatching, unlike any colour a band can have. */
  function otherFill(g) {
    var c = document.createElement('canvas');
    c.width = c.height = 8;
    var h = c.getContext('2d');
    h.fillStyle = '#d4d4d4'; h.fillRect(0, 0, 8, 8);
    h.strokeStyle = '#b0b0b0'; h.lineWidth = 2; h.beginPath(); h.moveTo(0, 8); h.lineTo(8, 0); h.stroke();
    return g.createPattern(c, 'repeat');
  }

  function drawLegend() {
    var lg = TL.legend, P = TL.P, lv = P.lv;
    lg.textContent = '';
    var seen = {}, order = [];
    for (var i = 0; i < P.n; i++) {
      var s = lv.stack[i], key = TL.colour === 'component' ? (s >= 0 ? STK[s].c : COMPS.length - 1) :
        TL.colour === 'module' ? (s >= 0 ? STK[s].m : -1) : s;
      if (!(key in seen)) { seen[key] = {i: i, bytes: 0}; order.push(key); }
      seen[key].bytes += lv.size[i];
    }
    order.sort(function (a, b) { return seen[b].bytes - seen[a].bytes; });
    order.slice(0, 14).forEach(function (key) {
      var s = lv.stack[seen[key].i], name = TL.colour === 'component' ? COMPS[key] : TL.colour === 'module' ?
        (key >= 0 ? S[key] : '[unknown]') : frames(s)[0];
      var sp = add(lg, 'span');
      add(sp, 'span', {cls: 'sw', style: 'background:' + bandColour(seen[key].i)});
      sp.appendChild(document.createTextNode(name));
    });
    if (lv.merged_allocs) {
      var sp = add(lg, 'span');
      add(sp, 'span', {cls: 'sw', style: 'background:repeating-linear-gradient(45deg,#d4d4d4,#d4d4d4 3px,#b0b0b0 3px,#b0b0b0 4px)'});
      sp.appendChild(document.createTextNode('other (allocations below ' + human(lv.threshold_bytes) + ')'));
    }
  }

  /* The band under (x, y) in the last drawing: -1 the "other" band, -2 nothing. */
  function hit(x, y) {
    var P = TL.P, lv = P.lv, W = TL.main.clientWidth, H = TL.main.clientHeight, L = TL.margin, pw = W - L - 8, ph = H - 8 - 22;
    if (!TL.samples || x < L || x > L + pw || y < 8 || y > 8 + ph) return -2;
    var s = Math.min(Math.floor((x - L) / pw * TL.samples.length), TL.samples.length - 1);
    if (s < 0) return -2;
    TL.hitSample = s;
    var ymax = Math.max(P.ymax, P.run.peak_bytes || 0, 1) * 1.04, v = (8 + ph - y) / ph * ymax, smp = TL.samples[s];
    if (v < smp.base) { TL.hitOther = {t: TL.v0 + (s + 0.5) * (TL.v1 - TL.v0) / TL.samples.length, o: smp.other}; return -1; }
    var off = smp.base, m = smp.m;
    for (var i = 0; i < P.n; i++) {
      if (P.aIx[i] <= m && P.fIx[i] > m) {
        if (v < off + lv.size[i]) return i;
        off += lv.size[i];
      }
    }
    return -2;
  }

  function kv(parent, rows) {
    var t = add(parent, 'table', {cls: 'kv'});
    rows.forEach(function (r) { var tr = add(t, 'tr'); add(tr, 'th', {text: r[0]}); add(tr, 'td', {text: r[1], cls: r[2] || ''}); });
  }
  function showStack(parent, ix) {
    var fr = add(parent, 'div', {cls: 'frames', id: 'cmt-detail-stack'});
    srcFrames(ix).forEach(function (x) {
      var e = add(fr, 'div', x.inlined ? {text: frameText(x), cls: 'inl'} : {text: frameText(x)});
      if (x.file) e.title = x.name + '  ' + locText(x, true);
    });
  }
  function showDetail(i) {
    var d = TL.detail, P = TL.P, lv = P.lv;
    d.textContent = '';
    if (i === -2) { add(d, 'div', {cls: 'dim', text: 'Hover over a band to see its allocation.'}); return; }
    if (TL.pinned !== -2) add(d, 'div', {cls: 'pinned', text: 'pinned (click it again, or elsewhere, to unpin)'});
    if (i === -1) {
      var o = TL.hitOther;
      add(d, 'h3', {text: 'other (' + exact(o.o.count) + ' allocations)'});
      kv(d, [['live bytes', bytesText(o.o.bytes), 'cmt-size'], ['allocations', exact(o.o.count) + ' live, each of at most ' + bytesText(lv.threshold_bytes - 1)],
        ['when', 'at the end of ' + timeText(Math.floor(o.t / lv.bucket_ns) * lv.bucket_ns) + ' .. ' +
          timeText((Math.floor(o.t / lv.bucket_ns) + 1) * lv.bucket_ns)],
        ['merged in all', exact(lv.merged_allocs) + ' allocations, ' + bytesText(lv.merged_bytes)]]);
      return;
    }
    var s = lv.stack[i], fr = frames(s);
    add(d, 'h3', {text: fr[0]});
    var life = lv.live[i] ? 'from ' + timeText(lv.start[i]) + ', never freed (live at the end)' :
      'from ' + timeText(lv.start[i]) + ' to ' + timeText(lv.end[i]) + ' (' + timeText(lv.end[i] - lv.start[i]) + ')';
    var rows = [['size', bytesText(lv.size[i]), 'cmt-size'], ['lifetime', life],
      ['component', s >= 0 ? COMPS[STK[s].c] : 'other']];
    if (TL.level === 'driver') {
      rows.push(['api', APIS[lv.api[i]] || '?']);
      rows.push(['kind', KINDS[lv.kind[i]] || '?']);
      rows.push(['seq', String(lv.seq[i])]);
    } else rows.push(['allocator entry', String(lv.seq[i])]);
    rows.push(['device', lv.dev[i] >= 0 ? String(lv.dev[i]) : '?']);
    if (s >= 0 && STK[s].m >= 0) rows.push(['module', S[STK[s].m]]);
    kv(d, rows);
    add(d, 'div', {cls: 'dim', text: TL.level === 'driver' ? 'stack (innermost first):' : 'stack (innermost first; Python and C++ frames):'});
    showStack(d, s);
  }
