/*
 * report.js: the report model's tables (top stacks, leaks, failures, largest allocations, the allocator
 * level's text); the what-if table and the OOM verdicts when the report has "whatif" and "oom_verdicts".
 */
  function generic(sec, title, id, rows) {
    add(sec, 'h2', {text: title});
    if (!Array.isArray(rows)) rows = rows && typeof rows === 'object' ? (Array.isArray(rows.rows) ? rows.rows : [rows]) : [];
    var keys = [];
    rows.forEach(function (r) { if (r && typeof r === 'object') Object.keys(r).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
    var t = table(keys, rows.map(function (r) {
      return keys.map(function (k) {
        var v = r[k];
        if (typeof v === 'number') return /bytes|size/.test(k) ? {cell: exact(v) + ' (' + human(v) + ')', cls: 'n'} : v;
        if (Array.isArray(v) && v.every(function (x) { return typeof x === 'string'; })) return {cell: v.join('\n'), cls: 'stack'};
        return v && typeof v === 'object' ? JSON.stringify(v) : v;
      });
    }));
    t.id = id;
    sec.appendChild(t);
  }

  function buildReport(sec) {
    var R = D.report;
    /* report --json always has "oom_verdicts" (an empty list without out-of-memory failures): no empty table */
    function some(x) { return Array.isArray(x) ? x.length > 0 : !!x; }
    if (some(R.whatif)) generic(sec, 'What if: the allocator under other settings and capacities', 'cmt-whatif', R.whatif);
    if (some(R.oom_verdicts)) generic(sec, 'Out-of-memory verdicts', 'cmt-oom-verdicts', R.oom_verdicts);
    add(sec, 'h2', {text: 'Live at the peak: top stacks'});
    sec.appendChild(table(['bytes', 'allocations', 'module', 'stack (innermost first)'], (R.top_at_peak || []).map(function (g) {
      return [{cell: human(g.bytes), cls: 'n'}, g.count, g.module, stackCell(modelLines(g.stack, g.stack_frames), 8)];
    })));
    add(sec, 'h2', {text: 'Live at exit (leaks): ' + human(R.leaked_bytes) + ' in ' + exact(R.leaked_count) + ' allocations'});
    if ((R.leaks || []).length) sec.appendChild(table(['bytes', 'allocations', 'module', 'stack'], R.leaks.map(function (g) {
      return [{cell: human(g.bytes), cls: 'n'}, g.count, g.module, stackCell(modelLines(g.stack, g.stack_frames), 8)];
    })));
    /* the page's report keeps the first and last ten failures and says how many there were (failures_total) */
    var f = R.failures || [], total = R.failures_total != null ? R.failures_total : f.length;
    add(sec, 'h2', {text: 'Failed allocations: ' + total});
    if (f.length) {
      var list = total > f.length ? f.slice(0, 10).concat([null], f.slice(10)) :
        f.length > 20 ? f.slice(0, 10).concat([null], f.slice(-10)) : f;
      sec.appendChild(table(['at', 'api', 'size', 'result', 'device free / total', 'held by the process', 'stack'], list.map(function (x) {
        if (!x) return ['...', (total - 20) + ' more (report --json has all)', '', '', '', '', ''];
        return [timeText(x.ts_ns), x.api, {cell: human(x.size), cls: 'n'}, {cell: x.result_name || String(x.result), cls: 'bad'},
          x.free_bytes == null ? '?' : human(x.free_bytes) + ' / ' + human(x.total_bytes), {cell: human(x.live_bytes), cls: 'n'}, stackCell(modelLines(x.stack, x.stack_frames), 6)];
      })));
    }
    add(sec, 'h2', {text: 'Largest allocations'});
    sec.appendChild(table(['size', 'kind', 'api', 'at', 'freed at', 'stack'], (R.largest || []).map(function (x) {
      return [{cell: human(x.size), cls: 'n'}, x.kind, x.api, timeText(x.ts_ns), x.free_ns == null ? 'never' : timeText(x.free_ns), stackCell(modelLines(x.stack, x.stack_frames), 4)];
    })));
    if (D.torch_text && D.torch_text.trim()) {
      add(sec, 'h2', {text: 'Fragmentation, out-of-memory verdicts, components'});
      add(sec, 'pre', {cls: 'text', text: D.torch_text});
    }
  }
