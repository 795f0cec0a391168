/*
 * phases.js: the run's phases (NVTX ranges, PyTorch annotations: RUN.ranges, analysis/html.h) as bands under
 * the memory chart, on its time axis (the timeline's v0..v1, its margins), like Nsight Systems' NVTX rows: per
 * process and thread one row per nesting level, start/end ranges on rows of their own (greedy lanes: they may
 * overlap); wheel and drag zoom and pan as on the chart; hovering a band shows its name, duration, the peak
 * inside it and its nesting in the detail panel.
 */
  var PH_ROW = 16, PH_ROWS = 40; /* row height (CSS px); rows drawn at most */

  /* Rows of one run's ranges: {rows: [{label, lanes}], row: the row of each range (-1: not drawn)}. */
  function preparePhases(run) {
    var R = run.ranges, n = R ? R.drawn : 0, keys = {}, list = [], row = new Int32Array(n), seEnd = {};
    for (var i = 0; i < n; i++) {
      var base = R.proc[i] + ':' + R.tid[i], key;
      if (R.depth[i] >= 0) key = base + ':d' + R.depth[i];
      else { /* start/end: the first lane of this thread free at its start */
        var ends = seEnd[base] || (seEnd[base] = []), l = 0;
        while (l < ends.length && ends[l] > R.start_ns[i]) l++;
        ends[l] = R.end_ns[i];
        key = base + ':s' + l;
      }
      if (!(key in keys)) {
        keys[key] = list.length;
        list.push({key: key, proc: R.proc[i], tid: R.tid[i], sub: R.depth[i] >= 0 ? R.depth[i] : 100000 + (l || 0),
          label: R.depth[i] >= 0 ? (R.tid[i] >= 0 ? 'tid ' + R.tid[i] : 'annotations') : 's/e ' + (R.tid[i] >= 0 ? R.tid[i] : '')});
      }
      row[i] = keys[key];
    }
    var order = list.map(function (r, k) { return k; });
    order.sort(function (a, b) {
      var x = list[a], y = list[b];
      return x.proc - y.proc || x.tid - y.tid || x.sub - y.sub;
    });
    var pos = new Int32Array(list.length);
    order.forEach(function (k, p) { pos[k] = p; });
    for (i = 0; i < n; i++) row[i] = pos[row[i]] < PH_ROWS ? pos[row[i]] : -1;
    var rows = order.map(function (k) { return list[k]; });
    /* per row, its ranges by start (a row of one thread's level never overlaps itself) */
    var byRow = rows.map(function () { return []; });
    for (i = 0; i < n; i++) if (row[i] >= 0) byRow[row[i]].push(i);
    return {run: run, R: R, n: n, rows: rows, row: row, byRow: byRow, hidden: Math.max(rows.length - PH_ROWS, 0)};
  }

  function phaseNesting(R, i) {
    var chain = [];
    for (var k = i; k >= 0 && chain.length < 64; k = R.parent[k]) chain.unshift(S[R.name[k]]);
    return chain.join(' > ');
  }

  function buildPhases(plots, after) {
    var c = el('canvas', {id: 'cmt-phases'}), note = el('div', {cls: 'dim', id: 'cmt-phases-note'});
    plots.insertBefore(c, after);
    plots.insertBefore(note, after);
    TL.phases = c; TL.phNote = note; TL.PH = null; TL.phHover = -1;
    function tOfX(x) { return TL.v0 + (x - TL.margin) / (c.clientWidth - TL.margin - 8) * (TL.v1 - TL.v0); }
    c.addEventListener('wheel', function (e) {
      e.preventDefault();
      var t = tOfX(e.offsetX), f = Math.exp(e.deltaY * 0.0015);
      var span = Math.min(Math.max((TL.v1 - TL.v0) * f, 1000), TL.P.dur), a = (t - TL.v0) / (TL.v1 - TL.v0);
      setView(t - a * span, t - a * span + span);
    }, {passive: false});
    var drag = null;
    c.addEventListener('mousedown', function (e) { drag = {x: e.offsetX, v0: TL.v0, v1: TL.v1, moved: false}; });
    window.addEventListener('mouseup', function () { drag = null; });
    c.addEventListener('mousemove', function (e) {
      if (drag && Math.abs(e.offsetX - drag.x) > 3) drag.moved = true;
      if (drag && drag.moved) {
        var dt = (e.offsetX - drag.x) / (c.clientWidth - TL.margin - 8) * (drag.v1 - drag.v0);
        setView(drag.v0 - dt, drag.v1 - dt);
        return;
      }
      var h = phaseHit(e.offsetX, e.offsetY);
      if (h !== TL.phHover) {
        TL.phHover = h;
        if (TL.pinned === -2) { if (h >= 0) showPhase(h); else showDetail(TL.hover); }
        drawPhases();
      }
    });
    c.addEventListener('mouseleave', function () {
      if (TL.phHover >= 0) { TL.phHover = -1; if (TL.pinned === -2) showDetail(TL.hover); drawPhases(); }
    });
    c.addEventListener('dblclick', function () { setView(0, TL.P.dur); });
  }

  /* The range under (x, y) of the phase canvas, or -1. A band narrower than 3 px is hit 1 px either side. */
  function phaseHit(x, y) {
    var PH = TL.PH;
    if (!PH || !PH.n) return -1;
    var r = Math.floor((y - 2) / PH_ROW), L = TL.margin, pw = TL.phases.clientWidth - L - 8;
    if (r < 0 || r >= PH.byRow.length || x < L || x > L + pw) return -1;
    var span = TL.v1 - TL.v0, t = TL.v0 + (x - L) / pw * span, tol = 1.5 * span / pw, best = -1, R = PH.R;
    PH.byRow[r].forEach(function (i) {
      if (R.start_ns[i] - tol <= t && t <= R.end_ns[i] + tol && (best < 0 || R.end_ns[i] - R.start_ns[i] < R.end_ns[best] - R.start_ns[best])) best = i;
    });
    return best;
  }

  function drawPhases() {
    var c = TL.phases, run = TL.P.run;
    if (!c) return;
    if (!TL.PH || TL.PH.run !== run) TL.PH = preparePhases(run);
    var PH = TL.PH, R = PH.R;
    if (!PH.n) { c.style.display = 'none'; TL.phNote.textContent = ''; return; }
    c.style.display = 'block';
    var nrows = Math.min(PH.rows.length, PH_ROWS);
    c.style.height = (nrows * PH_ROW + 4) + 'px';
    var f = fitCanvas(c), g = f.g, W = f.w, H = f.h, L = TL.margin, pw = W - L - 8, v0 = TL.v0, v1 = TL.v1, span = v1 - v0;
    function X(t) { return L + (t - v0) / span * pw; }
    g.clearRect(0, 0, W, H);
    g.font = '10px sans-serif'; g.textBaseline = 'middle';
    for (var r = 0; r < nrows; r++) {
      var y = 2 + r * PH_ROW, prevEnd = -1e9;
      g.fillStyle = r % 2 ? '#fafafa' : '#f3f3f3'; g.fillRect(L, y, pw, PH_ROW);
      var row = PH.rows[r];
      if (row.sub === 0 || row.sub >= 100000) { g.fillStyle = '#555'; g.textAlign = 'right'; g.fillText(row.label, L - 4, y + PH_ROW / 2); }
      g.textAlign = 'left';
      PH.byRow[r].forEach(function (i) {
        if (R.end_ns[i] < v0 || R.start_ns[i] > v1) return;
        var x0 = Math.max(X(R.start_ns[i]), L), x1 = Math.min(X(R.end_ns[i]), L + pw), w = Math.max(x1 - x0, 1);
        if (x1 < prevEnd && w <= 1) return; /* sub-pixel neighbours: one pixel is drawn once */
        prevEnd = x0 + w;
        g.fillStyle = hue('r' + S[R.name[i]], R.open[i] ? 80 : 70);
        g.fillRect(x0, y + 1, w, PH_ROW - 2);
        if (i === TL.phHover) { g.strokeStyle = '#000'; g.lineWidth = 1.5; g.strokeRect(x0, y + 1, w, PH_ROW - 2); }
        if (w > 30) {
          g.save(); g.beginPath(); g.rect(x0, y, w, PH_ROW); g.clip();
          g.fillStyle = '#222'; g.fillText(S[R.name[i]], x0 + 3, y + PH_ROW / 2 + 1); g.restore();
        }
      });
    }
    if (run.peak_bytes > 0 && run.peak_ns >= v0 && run.peak_ns <= v1) {
      g.strokeStyle = '#c0392b'; g.setLineDash([4, 3]); g.lineWidth = 1; g.beginPath();
      g.moveTo(X(run.peak_ns), 0); g.lineTo(X(run.peak_ns), H); g.stroke(); g.setLineDash([]);
    }
    g.textBaseline = 'alphabetic';
    c.setAttribute('data-plot', [L, 8, 2, PH_ROW].join(','));
    var notes = [];
    if (R.count > R.drawn) notes.push(exact(R.count - R.drawn) + ' more ranges not drawn (of ' + exact(R.count) + '; the deepest and shortest; report --json has every range name\'s peak)');
    if (PH.hidden) notes.push(exact(PH.hidden) + ' more rows (threads or levels) not drawn');
    TL.phNote.textContent = 'Phases (NVTX ranges): ' + exact(R.drawn) + ' drawn, rows per thread and nesting level; hover one for its peak.' +
      (notes.length ? ' ' + notes.join('; ') + '.' : '');
  }

  function showPhase(i) {
    var d = TL.detail, R = TL.PH.R;
    d.textContent = '';
    add(d, 'h3', {text: 'phase ' + S[R.name[i]]});
    var dur = R.end_ns[i] - R.start_ns[i];
    kv(d, [['peak inside', bytesText(R.peak_bytes[i]), 'cmt-phase-peak'],
      ['duration', timeText(dur) + ' (' + exact(dur) + ' ns)' + (R.open[i] ? ', still open at the end of the run' : '')],
      ['from', timeText(R.start_ns[i]) + ' to ' + timeText(R.end_ns[i])],
      ['nesting', phaseNesting(R, i)],
      ['thread', R.tid[i] >= 0 ? String(R.tid[i]) : 'unknown (imported)'],
      ['kind', R.depth[i] >= 0 ? 'push/pop, level ' + R.depth[i] : 'start/end'],
      ['domain', R.domain[i] >= 0 ? S[R.domain[i]] : 'default']]);
    add(d, 'div', {cls: 'dim', text: 'The peak is the most device memory of its process live at any moment inside the range.'});
  }
