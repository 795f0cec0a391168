"""The viewer pages (`report --html`, `timeline -o .html`, `diff -o .html`) in Debian's chromium alone, no
node needed: each page loads and draws with the network unreachable, logs nothing to the console, and a
screenshot is taken (kept in $CMT_ARTIFACTS when set). tests/test_viewer.py drives the same pages through
playwright-core (hover, zoom, flame graph, requests): these run where it cannot (no node or playwright-core), so
that chromium still checks the pages. Skipped, with the reason, where chromium is not installed."""
import os
import shutil
import subprocess
import unittest

from cmtlib import CUMEMTRACE, TraceTest
from test_analyzer import basic_trace

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLAYWRIGHT = os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser", "node_modules",
                                         "playwright-core", "package.json")) and shutil.which("node")


@unittest.skipUnless(CHROMIUM, "chromium is not installed (apt-get install chromium)")
@unittest.skipIf(PLAYWRIGHT, "tests/test_viewer.py drives these pages in chromium through playwright-core")
class BrowserTest(TraceTest):
    def shoot(self, page, png):
        p = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--user-data-dir=" + self.path("profile"),
             # no network: every name resolves to nothing and every proxy connection is refused
             "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
             "--enable-logging=stderr", "--v=0", "--window-size=1200,1800", "--screenshot=" + png,
             "file://" + page],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        console = [l for l in p.stderr.splitlines() if ":CONSOLE" in l or "Uncaught" in l]
        self.assertEqual(console, [], "console output from the page")
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertGreater(os.path.getsize(png), 10000)  # not a blank page
        art = os.environ.get("CMT_ARTIFACTS")
        if art:
            os.makedirs(art, exist_ok=True)
            shutil.copy(png, art)

    def test_report_html(self):
        db = basic_trace(self.path("run.db")).close()
        page = self.path("report.html")
        subprocess.run([CUMEMTRACE, "report", "--html", page, db], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        self.shoot(page, self.path("report.png"))

    def test_diff_html(self):
        a = basic_trace(self.path("a.db")).close()
        b = basic_trace(self.path("b.db"), pid=77).close()
        page = self.path("diff.html")
        subprocess.run([CUMEMTRACE, "diff", "-o", page, a, b], check=True, stdout=subprocess.DEVNULL)
        self.shoot(page, self.path("diff.png"))

    def test_timeline_html(self):
        db = basic_trace(self.path("run.db")).close()
        page = self.path("timeline.html")
        subprocess.run([CUMEMTRACE, "timeline", "--by", "module", "-o", page, db], check=True)
        self.shoot(page, self.path("timeline.png"))


if __name__ == "__main__":
    unittest.main()
