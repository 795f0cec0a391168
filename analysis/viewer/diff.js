/*
 * diff.js: `diff -o X.html`: the two runs' device memory over time since each one's start, overlaid, and the
 * growth by stack (live at each peak, largest growth first).
 */
  function buildDiff(sec) {
    add(sec, 'h2', {text: 'The two runs overlaid (time since each run\'s start)'});
    var c = add(sec, 'canvas', {id: 'cmt-overlay', style: 'height:260px;border:1px solid #ccc'});
    var lg = add(sec, 'div', {cls: 'legend'});
    ['#4e79a7', '#f28e2b'].forEach(function (col, i) {
      var sp = add(lg, 'span'); add(sp, 'span', {cls: 'sw', style: 'background:' + col});
      sp.appendChild(document.createTextNode('AB'[i] + ': ' + runs[i].label + ', peak ' + human(runs[i].peak_bytes)));
    });
    function drawOverlay() {
      var f = fitCanvas(c), g = f.g, W = f.w, H = f.h, L = 64, pw = W - L - 8, ph = H - 30;
      var dur = Math.max(runs[0].duration_ns, runs[1].duration_ns, 1), ymax = 1;
      runs.forEach(function (r) { r.levels.driver.total.forEach(function (p) { if (p[1] > ymax) ymax = p[1]; }); });
      ymax *= 1.05;
      g.clearRect(0, 0, W, H);
      ['#4e79a7', '#f28e2b'].forEach(function (col, i) {
        g.strokeStyle = col; g.lineWidth = 1.5; g.setLineDash(i ? [6, 3] : []); g.beginPath();
        var last = 8 + ph;
        g.moveTo(L, last);
        runs[i].levels.driver.total.forEach(function (p) {
          var x = L + p[0] / dur * pw, y = 8 + ph - p[1] / ymax * ph;
          g.lineTo(x, last); g.lineTo(x, y); last = y;
        });
        g.stroke();
      });
      g.setLineDash([]);
      g.strokeStyle = '#999'; g.lineWidth = 1; g.strokeRect(L, 8, pw, ph);
      g.fillStyle = '#444'; g.font = '11px sans-serif'; g.textAlign = 'right';
      var ys = niceBytesStep(ymax, 5);
      for (var v = 0; v <= ymax; v += ys) g.fillText(human(v), L - 4, 8 + ph - v / ymax * ph + 4);
      g.textAlign = 'center';
      var xs = niceStep(dur, 8);
      for (var t = 0; t <= dur; t += xs) g.fillText(timeText(t), L + t / dur * pw, 8 + ph + 15);
      g.textAlign = 'left';
    }
    drawOverlay();
    window.addEventListener('resize', drawOverlay);
    add(sec, 'h2', {text: 'Growth by stack (live at each peak, largest growth first)'});
    var rows = (D.growth || []).slice(0, 50).map(function (r) {
      return [{cell: human(r.a), cls: 'n'}, {cell: human(r.b), cls: 'n'}, {cell: signed(r.b - r.a), cls: 'n'}, stackCell(frames(r.stack), 8)];
    });
    var t = table(['A', 'B', 'B - A', 'stack (innermost first)'], rows);
    t.id = 'cmt-growth';
    sec.appendChild(t);
    if ((D.growth || []).length > 50) add(sec, 'div', {cls: 'dim', text: '... ' + (D.growth.length - 50) + ' more stacks (diff --json has all)'});
    if (D.diff_text) { add(sec, 'h2', {text: 'The diff as text'}); add(sec, 'pre', {cls: 'text', text: D.diff_text}); }
  }
