/*
 * flame.js: the flame graph of the memory held at the peak, by stack (root at the top); a click on a frame
 * zooms into it, a click on an ancestor (drawn grey above) goes back out. Frames with a source location are
 * named "function (file.c:12)" (the tooltip and the line above the graph give the file's path), functions
 * inlined into a frame are frames of their own below it, marked "[inlined]" and drawn in aqua (as flamegraph.pl
 * draws perf's inlined frames).
 */
  var FLAME = null;
  function buildFlame(run, lv, sec) {
    sec.textContent = '';
    var rows0 = lv && lv.peak_stacks ? lv.peak_stacks : run.peak_stacks, peak = lv && lv.peak_stacks ? lv.peak_bytes : run.peak_bytes;
    add(sec, 'h2', {text: 'Held at the peak, by stack (flame graph of the ' + (lv && lv.peak_stacks ? 'allocator\'s blocks' : 'driver allocations') +
      '; click a frame to zoom, an ancestor to go back)'});
    var root = {name: 'all (' + human(peak) + ' at the peak)', bytes: 0, count: 0, kids: {}, list: [], parent: null, depth: 0};
    rows0.forEach(function (p) {
      /* outermost first; a frame's inlined functions follow it as frames of their own, innermost last */
      var fr = srcFrames(p[0]).slice().reverse(), node = root;
      root.bytes += p[1]; root.count += p[2];
      fr.forEach(function (x) {
        var f = flameName(x), c = node.kids[f];
        if (!c) {
          c = node.kids[f] = {name: f, bytes: 0, count: 0, kids: {}, list: [], parent: node, depth: node.depth + 1, inl: x.inlined,
            full: x.file ? x.name + ' (' + locText(x, true) + ')' + (x.inlined ? ' [inlined]' : '') : f};
          node.list.push(c);
        }
        c.bytes += p[1]; c.count += p[2];
        node = c;
      });
    });
    (function sortAll(n) { n.list.sort(function (a, b) { return b.bytes - a.bytes; }); n.list.forEach(sortAll); })(root);
    var ctl = add(sec, 'div', {cls: 'controls'});
    var back = add(ctl, 'button', {id: 'cmt-flame-reset', text: 'whole peak'});
    var info = add(sec, 'div', {id: 'cmt-flame-info', cls: 'dim', text: 'Hover a frame for its bytes.'});
    var box = add(sec, 'div', {cls: 'flame', id: 'cmt-flame'});
    var focus = root;
    function render() {
      box.textContent = '';
      box.setAttribute('data-root', focus.name);
      var rows = 0, chain = [];
      for (var a = focus.parent; a; a = a.parent) chain.unshift(a);
      chain.forEach(function (a, i) { frame(a, i, 0, 100, true); });
      var base = chain.length;
      (function lay(n, depth, left, width) {
        frame(n, depth, left, width, false);
        if (depth + 1 > rows) rows = depth + 1;
        var x = left;
        n.list.forEach(function (c) {
          var w = focus.bytes ? c.bytes / focus.bytes * 100 : 0;
          if (w >= 0.15) lay(c, depth + 1, x, w);
          x += w;
        });
      })(focus, base, 0, 100);
      box.style.height = (Math.max(rows, base + 1) * 18 + 2) + 'px';
    }
    function frame(n, depth, left, width, anc) {
      var d = add(box, 'div', {cls: 'fr' + (anc ? ' anc' : ''), 'data-name': n.name,
        style: 'left:' + left + '%;width:' + width + '%;top:' + depth * 18 + 'px;background:' +
          (n === root ? '#d9d9d9' : n.inl ? 'hsl(' + (178 + hash(n.name) % 16) + ',55%,' + (66 + hash(n.name + 'l') % 10) + '%)' : 'hsl(' + (20 + hash(n.name) % 40) + ',80%,' + (62 + hash(n.name + 'l') % 14) + '%)')});
      d.textContent = n.name + '  ' + human(n.bytes);
      d.title = n.full || n.name;
      d.addEventListener('mouseenter', function () {
        info.textContent = (n.full || n.name) + ': ' + bytesText(n.bytes) + ' in ' + exact(n.count) + ' allocations, ' +
          (root.bytes ? (100 * n.bytes / root.bytes).toFixed(1) : '0') + '% of the peak';
      });
      d.addEventListener('click', function () { focus = n; render(); });
    }
    back.addEventListener('click', function () { focus = root; render(); });
    render();
  }
