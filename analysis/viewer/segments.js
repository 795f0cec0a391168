/*
 * segments.js: the caching allocator's segments at the peak and at each OOM (PyTorch traces): each segment
 * a bar to scale, its blocks coloured by component, the free gaps hatched.
 */
  function buildSegments(run, sec) {
    add(sec, 'h2', {text: 'Allocator segments at the peak and at each out-of-memory'});
    var ctl = add(sec, 'div', {cls: 'controls'}), lab = add(ctl, 'label', {text: 'moment '}), sel = add(lab, 'select', {id: 'cmt-seg-point'});
    run.segments.forEach(function (p, i) {
      add(sel, 'option', {value: i, text: (p.point === 'oom' ? 'out of memory (request ' + human(p.request_bytes) + ')' : 'peak') +
        ' at ' + timeText(p.ts_ns) + ', device ' + p.device + ': allocated ' + human(p.allocated_bytes) + ' of ' +
        human(p.reserved_bytes) + ' reserved'});
    });
    var sum = add(sec, 'div', {id: 'cmt-seg-sum'});
    var info = add(sec, 'div', {id: 'cmt-seg-info', cls: 'dim', text: 'Each bar a segment, to scale; coloured: blocks by component; hatched: free. Hover for details.'});
    var box = add(sec, 'div', {cls: 'segs', id: 'cmt-segments'});
    function render() {
      var p = run.segments[+sel.value], max = 1, free = 0, shown = p.segs.slice(0, 2000);
      box.textContent = '';
      p.segs.forEach(function (sg) { if (sg.size > max) max = sg.size; });
      shown.forEach(function (sg) {
        var used = 0;
        sg.blocks.forEach(function (b) { used += b[1]; });
        free += sg.size - used;
        /* to scale: the largest segment is half a row wide */
        var bar = add(box, 'div', {cls: 'bar', style: 'width:calc(' + Math.max(sg.size / max * 49.5, 0.4) + '% - 2px)'});
        var what = 'segment 0x' + sg.addr.toString(16) + ': ' + bytesText(sg.size) + ', ' + exact(sg.blocks.length) +
          ' blocks, ' + bytesText(sg.size - used) + ' free';
        bar.addEventListener('mouseenter', function () { info.textContent = what; });
        sg.blocks.forEach(function (b) {
          var st = b[2], blk = add(bar, 'div', {cls: 'blk', style: 'left:' + (b[0] / sg.size * 100) + '%;width:' +
            Math.max(b[1] / sg.size * 100, 0.2) + '%;background:' + PALETTE[(st >= 0 ? STK[st].c : 10) % PALETTE.length]});
          blk.addEventListener('mouseenter', function (e) {
            e.stopPropagation();
            info.textContent = 'block of ' + bytesText(b[1]) + ' at offset ' + exact(b[0]) + ' of ' + what + ';  ' +
              (st >= 0 ? COMPS[STK[st].c] + ': ' : '') + frames(st).slice(0, 4).join('  <  ');
          });
        });
      });
      sum.textContent = exact(p.segs.length) + ' segments, ' + bytesText(p.reserved_bytes) + ' reserved, ' +
        bytesText(p.allocated_bytes) + ' allocated' + (p.segs.length > shown.length ? ' (the first ' + shown.length + ' drawn)' : '');
    }
    sel.addEventListener('change', render);
    render();
  }
