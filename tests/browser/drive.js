// drive.js: opens one cumemtrace HTML page in Debian's chromium through playwright-core and runs the steps
// that tests/test_viewer.py asks for; prints one JSON object of what it saw. Used by tests only.
//
// usage: node drive.js PAGE.html OUTDIR STEPS.json
// Every request is routed: file: and data: URLs go through, anything else is recorded and aborted (the
// page must fetch nothing). Console messages of type error/warning and uncaught exceptions are recorded.
// Steps (results in order): {"hover_at": [t_ns, bytes]} / {"click_at": [t_ns, bytes]} (a point of the band
// canvas, placed by the page's own declared axes: data-plot margins, data-ymax, the range's data-t0/t1),
// returns the detail panel's innerText; {"hover_phase": [t_ns, row]} (a point of the phase bands, the same);
// {"wheel_at": [t_ns, deltaY]} returns the new [t0, t1]; {"click": sel};
// {"select": [sel, value]}; {"eval": expression} (its value); {"text": sel} (its innerText); {"value": sel} (a form control's value); {"attr": [sel, name]}; {"screenshot": name} (OUTDIR/name.png, the full page).
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

async function main() {
  const [page_path, outdir, steps_path] = process.argv.slice(2);
  const steps = JSON.parse(fs.readFileSync(steps_path, 'utf8'));
  const out = { console: [], errors: [], requests: [], results: [] };
  const browser = await chromium.launch({
    executablePath: process.env.CMT_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, offline: true });
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:') || url.startsWith('data:')) return route.continue();
      out.requests.push(url);
      return route.abort();
    });
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') out.console.push(m.type() + ': ' + m.text()); });
    page.on('pageerror', (e) => out.errors.push(String(e)));
    page.on('request', (r) => { const u = r.url(); if (!u.startsWith('file:') && !u.startsWith('data:')) out.requests.push(u); });
    const t0 = Date.now();
    await page.goto('file://' + path.resolve(page_path), { waitUntil: 'load', timeout: 60000 });
    await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
    out.load_ms = Date.now() - t0;
    const point = async (t, v) => page.evaluate(([t, v]) => {
      const c = document.getElementById('cmt-bands');
      c.scrollIntoView({ block: 'center' });
      const r = c.getBoundingClientRect();
      const [L, R, T, B] = c.getAttribute('data-plot').split(',').map(Number), ymax = +c.getAttribute('data-ymax');
      const rg = document.getElementById('cmt-range'), t0 = +rg.getAttribute('data-t0'), t1 = +rg.getAttribute('data-t1');
      // the canvas's content box (inside its border) is what the page lays its axes in
      const pw = c.clientWidth - L - R, ph = c.clientHeight - T - B, x0 = r.left + c.clientLeft, y0 = r.top + c.clientTop;
      return [x0 + L + (t - t0) / (t1 - t0) * pw, y0 + T + ph - v / ymax * ph];
    }, [t, v]);
    for (const s of steps) {
      if (s.hover_at || s.click_at) {
        const [x, y] = await point(...(s.hover_at || s.click_at));
        await page.mouse.move(x, y);
        if (s.click_at) await page.mouse.click(x, y);
        out.results.push(await page.innerText('#cmt-detail'));
      } else if (s.hover_phase) {
        // a point of the phase bands under the chart (time t_ns, row r; data-plot: left, right margins, top,
        // row height), placed on the time axis the chart declares; returns the detail panel's innerText
        const [x, y] = await page.evaluate(([t, row]) => {
          const c = document.getElementById('cmt-phases');
          c.scrollIntoView({ block: 'center' });
          const r = c.getBoundingClientRect(), [L, R, T, RH] = c.getAttribute('data-plot').split(',').map(Number);
          const rg = document.getElementById('cmt-range'), t0 = +rg.getAttribute('data-t0'), t1 = +rg.getAttribute('data-t1');
          const pw = c.clientWidth - L - R;
          return [r.left + c.clientLeft + L + (t - t0) / (t1 - t0) * pw, r.top + c.clientTop + T + (row + 0.5) * RH];
        }, s.hover_phase);
        await page.mouse.move(x, y);
        out.results.push(await page.innerText('#cmt-detail'));
      } else if (s.wheel_at) {
        const [x, y] = await point(s.wheel_at[0], 0);
        await page.mouse.move(x, y - 20);
        await page.mouse.wheel(0, s.wheel_at[1]);
        await page.waitForTimeout(100);
        out.results.push(await page.evaluate(() => {
          const rg = document.getElementById('cmt-range');
          return [+rg.getAttribute('data-t0'), +rg.getAttribute('data-t1')];
        }));
      } else if (s.drag_at) {
        // a drag over the band canvas from time t by dx pixels (a pan); returns the new [t0, t1]
        const [x, y] = await point(s.drag_at[0], 0);
        await page.mouse.move(x, y - 20);
        await page.mouse.down();
        await page.mouse.move(x + s.drag_at[1], y - 20, { steps: 5 });
        await page.mouse.up();
        await page.waitForTimeout(100);
        out.results.push(await page.evaluate(() => {
          const rg = document.getElementById('cmt-range');
          return [+rg.getAttribute('data-t0'), +rg.getAttribute('data-t1')];
        }));
      } else if (s.brush) {
        // a drag over the overview strip from time a to time b; returns the new [t0, t1]
        const [xa, xb, y] = await page.evaluate(([ta, tb]) => {
          const c = document.getElementById('cmt-overview');
          c.scrollIntoView({ block: 'center' });
          const r = c.getBoundingClientRect(), [L, R] = c.getAttribute('data-plot').split(',').map(Number);
          const dur = +c.getAttribute('data-dur'), pw = c.clientWidth - L - R, x0 = r.left + c.clientLeft + L;
          return [x0 + ta / dur * pw, x0 + tb / dur * pw, r.top + r.height / 2];
        }, s.brush);
        await page.mouse.move(xa, y);
        await page.mouse.down();
        await page.mouse.move(xb, y, { steps: 5 });
        await page.mouse.up();
        await page.waitForTimeout(100);
        out.results.push(await page.evaluate(() => {
          const rg = document.getElementById('cmt-range');
          return [+rg.getAttribute('data-t0'), +rg.getAttribute('data-t1')];
        }));
      } else if (s.click) {
        await page.click(s.click);
        out.results.push(null);
      } else if (s.text) {
        out.results.push(await page.innerText(s.text));
      } else if (s.select) {
        await page.selectOption(s.select[0], s.select[1]);
        await page.waitForTimeout(50);
        out.results.push(null);
      } else if (s.eval) {
        out.results.push(await page.evaluate(s.eval));
      } else if (s.value) {
        out.results.push(await page.inputValue(s.value));
      } else if (s.attr) {
        out.results.push(await page.getAttribute(s.attr[0], s.attr[1]));
      } else if (s.screenshot) {
        await page.screenshot({ path: path.join(outdir, s.screenshot + '.png'), fullPage: true });
        out.results.push(s.screenshot);
      } else throw new Error('unknown step ' + JSON.stringify(s));
    }
  } finally {
    await browser.close();
  }
  out.requests = [...new Set(out.requests)]; // seen by the route and by the request event
  process.stdout.write(JSON.stringify(out) + '\n');
}
main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
