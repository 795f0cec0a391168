#!/usr/bin/env python3
"""bench/bench_whatif.py BUILD_DIR [ENTRIES]: how fast `cumemtrace whatif` replays an allocator history.

Builds a snapshot with ENTRIES trace entries (default 1,000,000) of a training-like pattern (waves of
activations of many sizes freed in reverse, small temporaries), imports it, then times `whatif` with the
recorded settings alone (the SQLite read and the checked recorded replay), with eight more default-backend
configurations and with eight expandable_segments:True ones (CPU seconds of the command, best of five runs
each). Prints entries per second end to end and per replay (the extra configurations' time over the
recorded run alone, each replaying every entry).
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
        default = ["max_split_size_mb:%d" % m for m in (32, 64, 128, 256, 512, 1024)] + \
            ["roundup_power2_divisions:4", "roundup_power2_divisions:8"]
        expandable = ["expandable_segments:True"] + ["expandable_segments:True," + c for c in default[:7]]
        runs = []
        for confs in ([], default, expandable):
            args = sum((["--alloc-conf", c] for c in confs), [])
            best = None
            for _ in range(5):  # CPU seconds of the child, the best of five: the machine is shared
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run([cmt, "whatif", "--json", db] + args, check=True, stdout=subprocess.DEVNULL)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                dt = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                best = dt if best is None or dt < best else best
            runs.append((len(confs), best))
        (_, one), (kd, tdef), (ke, texp) = runs
        print("%d entries: read + the recorded replay (checked entry by entry) %.2f s: %.2f M entries/s end to end; "
              "%d default-backend replays %.2f s more: %.2f M entries/s each; %d expandable_segments:True replays "
              "%.2f s more: %.2f M entries/s each" % (want, one, want / one / 1e6, kd, tdef - one,
                                                      kd * want / max(tdef - one, 1e-9) / 1e6, ke, texp - one,
                                                      ke * want / max(texp - one, 1e-9) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
