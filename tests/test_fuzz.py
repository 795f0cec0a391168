"""The libFuzzer target over trace files (issue 8, property 7): tests/fuzz/run builds it with clang and
ASan+UBSan, replays the committed corpus (tests/fuzz/corpus, tests/fuzz/regressions) through every verb,
then fuzzes for a short while. A crash, a leak, undefined behaviour or a timeout fails the test with the
sanitizer's report. Runs in the plain suite only (the target is its own sanitized build); skipped, with the
reason, where clang or libFuzzer is not installed."""
import os
import subprocess
import unittest

import cmtlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SANITIZED_SUITE = bool(cmtlib.SANITIZER_PRELOAD or os.environ.get("CMT_SLOW_SUITE"))


@unittest.skipIf(SANITIZED_SUITE, "the fuzz target is its own ASan+UBSan build: run once, in the plain suite")
class FuzzTest(unittest.TestCase):
    def test_corpus_and_a_short_fuzzing_run(self):
        seconds = os.environ.get("CMT_FUZZ_SECONDS", "20")
        p = subprocess.run([os.path.join(ROOT, "tests", "fuzz", "run"), seconds], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
        if p.returncode == 77:
            self.skipTest(p.stderr.strip())
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("fuzz: no findings", p.stdout)
        runs = int(p.stdout.split("stat::number_of_executed_units:")[1].split()[0])
        self.assertGreater(runs, 100, p.stdout)  # it did fuzz: at least a hundred executions
