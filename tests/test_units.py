"""C unit tests (tests/unit), run as programs: each prints 'ok ...' and exits 0, or says what failed."""
import os

from cmtlib import BUILD, TraceTest, run


class Units(TraceTest):
    def test_ring_many_producers(self):
        p = run([os.path.join(BUILD, "tests", "unit", "ring_test")], dict(os.environ), timeout=300)
        self.assertTrue(p.stdout.startswith("ok 1200000 events"), p.stdout + p.stderr)
