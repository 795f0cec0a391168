/*
 * diff.js: `diff -o X.html`: the two runs' device memory over time since each one's start, overlaid, and the
 * growth by stack (live at each peak, largest growth first); with phases, the growth by phase (D.phases: peak
 * A, peak B per range name, as the text diff prints it), and with --align RANGE (D.aligned) B's time offset so
 * that the chosen instance of RANGE starts at the same moment in both runs, and that instance's phases.
 */
  function buildDiff(sec) {
    var AL = D.aligned, inst = -1, off = 0, alNote = null;
    var pairs = AL ? AL.instances.filter(function (x) { return x.a_start_ns != null && x.b_start_ns != null; }) : [];
    add(sec, 'h2', {text: pairs.length ? 'The two runs overlaid, aligned by phase ' + AL.range :
      'The two runs overlaid (time since each run\'s start)'});
    if (pairs.length) {
      var actl = add(sec, 'div', {cls: 'controls'}), alab = add(actl, 'label', {text: 'align instance '});
      var asel = add(alab, 'select', {id: 'cmt-align'});
      pairs.forEach(function (x) { add(asel, 'option', {value: x.index, text: AL.range + ' ' + x.index}); });
      var zlab = add(actl, 'label', {text: ' only the instance'}), zoom = el('input', {type: 'checkbox', id: 'cmt-align-zoom'});
      zoom.checked = true;
      zlab.insertBefore(zoom, zlab.firstChild);
      zoom.addEventListener('change', function () { drawOverlay(); });
      alNote = add(actl, 'span', {id: 'cmt-align-note'});
      asel.addEventListener('change', function () { align(+asel.value); drawOverlay(); phaseTable(); });
    }
    /* B's times are offset by off ns so that instance n of the range starts together in A and B */
    function align(n) {
      var x = AL.instances[n];
      inst = n; off = x.a_start_ns - x.b_start_ns;
      alNote.textContent = 'B is shifted by ' + (off >= 0 ? '+' : '-') + timeText(Math.abs(off)) + ' (' + exact(off) +
        ' ns) so that ' + AL.range + ' ' + n + ' starts at the same moment: ' + timeText(x.a_start_ns) + ' into A, ' +
        timeText(x.b_start_ns) + ' into B.';
      alNote.setAttribute('data-offset-ns', String(off));
    }
    /* the instance's span on A's axis: from the common start to the later of its two ends (ranges drawn on the page) */
    function instSpan(n) {
      var x = AL.instances[n], len = [0, 0];
      [x.a_start_ns, x.b_start_ns].forEach(function (st, side) {
        var R = runs[side].ranges;
        for (var q = 0; R && q < R.drawn; q++) if (R.start_ns[q] === st && S[R.name[q]] === AL.range) { len[side] = R.end_ns[q] - R.start_ns[q]; break; }
      });
      return [x.a_start_ns, x.a_start_ns + Math.max(len[0], len[1])];
    }
    if (pairs.length) align(pairs[0].index);
    var c = add(sec, 'canvas', {id: 'cmt-overlay', style: 'height:260px;border:1px solid #ccc'});
    var lg = add(sec, 'div', {cls: 'legend'});
    ['#4e79a7', '#f28e2b'].forEach(function (col, i) {
      var sp = add(lg, 'span'); add(sp, 'span', {cls: 'sw', style: 'background:' + col});
      sp.appendChild(document.createTextNode('AB'[i] + ': ' + runs[i].label + ', peak ' + human(runs[i].peak_bytes)));
    });
    function drawOverlay() {
      var f = fitCanvas(c), g = f.g, W = f.w, H = f.h, L = 64, pw = W - L - 8, ph = H - 30;
      /* the time axis: from the earlier start to the later end once B is offset */
      var t0 = Math.min(0, off), dur = Math.max(runs[0].duration_ns, runs[1].duration_ns + off, 1) - t0, ymax = 1;
      var span = inst >= 0 ? instSpan(inst) : null;
      if (span && document.getElementById('cmt-align-zoom').checked) { /* the aligned instance, longer side, 5 % either side */
        var pad = Math.max(span[1] - span[0], 1000) * 0.05;
        t0 = span[0] - pad; dur = span[1] - span[0] + 2 * pad;
      }
      runs.forEach(function (r) { r.levels.driver.total.forEach(function (p) { if (p[1] > ymax) ymax = p[1]; }); });
      ymax *= 1.05;
      g.clearRect(0, 0, W, H);
      g.save(); g.beginPath(); g.rect(L, 0, pw, H); g.clip();
      ['#4e79a7', '#f28e2b'].forEach(function (col, i) {
        g.strokeStyle = col; g.lineWidth = 1.5; g.setLineDash(i ? [6, 3] : []); g.beginPath();
        var last = 8 + ph;
        g.moveTo(L, last);
        runs[i].levels.driver.total.forEach(function (p) {
          var x = L + (p[0] + (i ? off : 0) - t0) / dur * pw, y = 8 + ph - p[1] / ymax * ph;
          g.lineTo(x, last); g.lineTo(x, y); last = y;
        });
        g.stroke();
      });
      g.restore();
      g.setLineDash([]);
      if (inst >= 0) { /* the aligned instance: its span in A, shaded, and the common start */
        var x = AL.instances[inst], xs0 = L + (x.a_start_ns - t0) / dur * pw;
        if (span) { g.fillStyle = 'rgba(78,121,167,0.10)'; g.fillRect(xs0, 8, Math.max((span[1] - span[0]) / dur * pw, 1), ph); }
        g.save(); g.beginPath(); g.rect(L, 0, pw, H); g.clip();
        g.strokeStyle = '#555'; g.setLineDash([2, 2]); g.beginPath(); g.moveTo(xs0, 8); g.lineTo(xs0, 8 + ph); g.stroke(); g.setLineDash([]);
        g.fillStyle = '#333'; g.font = '11px sans-serif'; g.fillText(AL.range + ' ' + inst, xs0 + 3, 20);
        g.restore();
      }
      g.strokeStyle = '#999'; g.lineWidth = 1; g.strokeRect(L, 8, pw, ph);
      g.fillStyle = '#444'; g.font = '11px sans-serif'; g.textAlign = 'right';
      var ys = niceBytesStep(ymax, 5);
      for (var v = 0; v <= ymax; v += ys) g.fillText(human(v), L - 4, 8 + ph - v / ymax * ph + 4);
      g.textAlign = 'center';
      var xs = niceStep(dur, 8);
      for (var t = Math.ceil(t0 / xs) * xs; t <= t0 + dur; t += xs) g.fillText(timeText(t), L + (t - t0) / dur * pw, 8 + ph + 15);
      c.setAttribute('data-axis', [t0, dur, off].join(','));
      g.textAlign = 'left';
    }
    drawOverlay();
    window.addEventListener('resize', drawOverlay);
    add(sec, 'h2', {text: 'Growth by stack (live at each peak, largest growth first)'});
    var rows = (D.growth || []).slice(0, 50).map(function (r) {
      return [{cell: human(r.a), cls: 'n'}, {cell: human(r.b), cls: 'n'}, {cell: signed(r.b - r.a), cls: 'n'}, stackCell(frameLines(r.stack), 8)];
    });
    var t = table(['A', 'B', 'B - A', 'stack (innermost first)'], rows);
    t.id = 'cmt-growth';
    sec.appendChild(t);
    if ((D.growth || []).length > 50) add(sec, 'div', {cls: 'dim', text: '... ' + (D.growth.length - 50) + ' more stacks (diff --json has all)'});
    function phaseRows(list) {
      return list.map(function (p) {
        return [p.name, {cell: exact(p.a_count) + ' / ' + exact(p.b_count), cls: 'n'}, {cell: bytesText(p.a_peak_bytes), cls: 'n'},
          {cell: bytesText(p.b_peak_bytes), cls: 'n'}, {cell: (p.delta_bytes > 0 ? '+' : '') + exact(p.delta_bytes) + ' (' + signed(p.delta_bytes) + ')', cls: 'n'}];
      });
    }
    var PHEAD = ['range', 'count A / B', 'peak A', 'peak B', 'B - A'];
    if ((D.phases || []).length) {
      add(sec, 'h2', {text: 'Growth by phase (the most device memory live inside each range name; largest growth first)'});
      var pt = table(PHEAD, phaseRows(D.phases));
      pt.id = 'cmt-phase-growth';
      sec.appendChild(pt);
    }
    var alSec = AL ? add(sec, 'div', {id: 'cmt-aligned'}) : null;
    function phaseTable() {
      if (!alSec) return;
      alSec.textContent = '';
      add(alSec, 'h2', {text: 'Instance by instance: ' + AL.range + ' (A ' + AL.a_count + ', B ' + AL.b_count + ')'});
      var it = table(['instance', 'peak A', 'peak B', 'B - A', 'grew most'], AL.instances.map(function (x) {
        return [String(x.index), x.a_peak_bytes == null ? '(none)' : {cell: bytesText(x.a_peak_bytes), cls: 'n'},
          x.b_peak_bytes == null ? '(none)' : {cell: bytesText(x.b_peak_bytes), cls: 'n'}, {cell: signed(x.delta_bytes), cls: 'n'}, x.grew || ''];
      }));
      it.id = 'cmt-aligned-instances';
      alSec.appendChild(it);
      if (inst >= 0 && AL.instances[inst].phases.length) {
        add(alSec, 'h2', {text: 'Phases inside ' + AL.range + ' ' + inst + ' (the aligned instance)'});
        var at = table(PHEAD, phaseRows(AL.instances[inst].phases));
        at.id = 'cmt-aligned-phases';
        alSec.appendChild(at);
      }
    }
    phaseTable();
    if (D.diff_text) { add(sec, 'h2', {text: 'The diff as text'}); add(sec, 'pre', {cls: 'text', text: D.diff_text}); }
  }
