#!/usr/bin/env python3
"""bench/bench_whatif.py BUILD_DIR [ENTRIES]: how fast `cumemtrace whatif` replays an allocator history.

Builds a snapshot with ENTRIES trace entries (default 1,000,000) of a training-like pattern (a few long-lived
blocks, waves of activations of many sizes freed in reverse, small temporaries), imports it, then times
`whatif` with the recorded settings alone, with three more default-backend configurations, and with three
expandable_segments:True ones (CPU seconds of the command, best of five runs each). Prints entries replayed per second (each
configuration replays every entry; the SQLite read is included once per run).
A benchmark, not a test. Results go in bench/RESULTS.md.
"""
import os
import pickle
import random
import resource
import subprocess
import sys
import tempfile


def main(argv):
    if not argv:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    build = os.path.abspath(argv[0])
    want = int(argv[1]) if len(argv) > 1 else 1_000_000
    cmt = os.path.join(build, "analysis", "cumemtrace")
    rnd = random.Random(7)
    entries, live, addr = [], [], 1 << 40
    t = 1_000_000
    while len(entries) < want:
        wave = []
        for _ in range(rnd.randint(20, 200)):
            size = rnd.choice([rnd.randint(1, 1 << 20), rnd.randint(1 << 20, 64 << 20), 512 * rnd.randint(1, 64)])
            addr += 1 << 27
            entries.append({"action": "alloc", "addr": addr, "size": size, "stream": 0, "time_us": t, "frames": []})
            wave.append((addr, size))
            t += 1
        for a, size in reversed(wave):
            entries.append({"action": "free_completed", "addr": a, "size": size, "stream": 0, "time_us": t,
                            "frames": []})
            t += 1
    snap = {"segments": [], "device_traces": [entries[:want]]}
    with tempfile.TemporaryDirectory() as d:
        sp, db = os.path.join(d, "s.pickle"), os.path.join(d, "s.db")
        with open(sp, "wb") as f:
            pickle.dump(snap, f)
        subprocess.run([cmt, "import-torch", sp, "-o", db], check=True)
        runs = []
        for args in ([], ["--alloc-conf", "max_split_size_mb:64", "--alloc-conf", "roundup_power2_divisions:4",
                          "--alloc-conf", "max_split_size_mb:256"],
                     ["--alloc-conf", "expandable_segments:True", "--alloc-conf",
                      "expandable_segments:True,roundup_power2_divisions:4", "--alloc-conf",
                      "expandable_segments:True,max_split_size_mb:256"]):
            best = None
            for _ in range(5):  # CPU seconds of the child, the best of five: the machine is shared
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run([cmt, "whatif", "--json", db] + args, check=True, stdout=subprocess.DEVNULL)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                dt = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                best = dt if best is None or dt < best else best
            runs.append(best)
        one, four, exp = runs
        print("%d entries: recorded alone %.2f s (%.2f M entries/s with the read); four configurations %.2f s; "
              "the three extra replays %.2f M entries/s; with three expandable_segments:True configurations "
              "%.2f s: %.2f M entries/s" % (want, one, want / one / 1e6, four, 3 * want / max(four - one, 1e-9) / 1e6,
                                            exp, 3 * want / max(exp - one, 1e-9) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
