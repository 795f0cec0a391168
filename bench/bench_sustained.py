#!/usr/bin/env python3
"""bench/bench_sustained.py [--depth N] [BUILD] [SIZES...]: issue 8's sustained-rate figures, from 4 threads.

For each size N (events; default 10 K, 100 K, 1 M, 10 M), two runs of tests/clients/threads_client with 4
threads (each thread: alloc, alloc, free, free, so N / 16 rounds):

  together   the program and the writer run at once, as in real use: the rate is first to last event
             (events/s into the trace), the events lost, how long after the program's exit the file was
             final, and bytes per event on disk;
  writer     the writer alone: every event is queued first (a queue that holds them all, the writer held
             back CUMEMTRACE_DEBUG_WRITER_DELAY_MS), so nothing competes with it for the CPU; its rate is
             events over the time from the end of the hold to the final file (draining, block writes,
             finalize). The queue holds at most 1,048,576 events, so this run stops at 1 M.

Also prints the machine's core count and load: on 2 cores, 4 producer threads and the writer share two
CPUs, and the together rate is what the CPUs allow, which the writer-alone rate separates from what the
writer can do. --depth N sets CUMEMTRACE_STACK_DEPTH for the together runs (default: the interposer's,
128; 0 records no stacks, which leaves the program only the copy into the queue). Not a pass/fail test;
results go to bench/RESULTS.md.
"""
import fcntl
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    args = sys.argv[1:]
    depth = None
    if args[:1] == ["--depth"]:
        depth, args = args[1], args[2:]
    build = os.path.abspath(args[0] if args else os.path.join(ROOT, "build"))
    sizes = [int(s) for s in args[1:]] or [10_000, 100_000, 1_000_000, 10_000_000]
    subprocess.run(["ninja", "-C", build, "tests/clients/threads_client", "schema/libcumemtrace_sqlite.so"],
                   check=True, stdout=subprocess.DEVNULL)
    client = os.path.join(build, "tests", "clients", "threads_client")
    ext = os.path.join(build, "schema", "libcumemtrace_sqlite")
    base = dict(os.environ, LD_LIBRARY_PATH=os.path.join(build, "simgpu"),
                LD_PRELOAD=os.path.join(build, "interpose", "libcumemtrace.so"))
    print("cores: %d, load average: %s, stack depth: %s" % (os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3]),
                                                             depth if depth is not None else "default (128)"))
    print("| events | run | lost | M events/s | final after exit (s) | bytes/event |")
    print("|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            rounds = max(1, n // 16)
            for mode in ("together", "writer"):
                if mode == "writer" and n > (1 << 20):
                    continue
                db = os.path.join(tmp, "%s-%d.db" % (mode, n))
                env = dict(base, CUMEMTRACE_OUTPUT=db)
                if depth is not None:
                    env["CUMEMTRACE_STACK_DEPTH"] = depth
                hold = 0
                if mode == "writer":
                    hold = 3000 + n // 1000  # the program must be done queueing before the writer starts
                    env.update(CUMEMTRACE_QUEUE=str(min(1 << 20, max(64, n))), CUMEMTRACE_STACK_DEPTH="16",
                               CUMEMTRACE_DEBUG_WRITER_DELAY_MS=str(hold))
                subprocess.run([client, "4", str(rounds)], env=env, check=True, stdout=subprocess.DEVNULL)
                exited = time.monotonic_ns()
                with open(db, "rb") as f:  # the writer holds an exclusive lock until the file is final
                    fcntl.flock(f, fcntl.LOCK_SH)
                final = time.monotonic_ns()
                q = subprocess.run(["sqlite3", "-cmd", ".load " + ext, db,
                                    "SELECT p.events_written, p.events_lost, min(e.ts_ns), max(e.ts_ns),"
                                    " (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size)"
                                    " FROM process p, events e"], check=True, capture_output=True, text=True)
                written, lost, first, last, size = (int(x) for x in q.stdout.strip().split("|"))
                if mode == "together":
                    rate = written / ((last - first) / 1e9) / 1e6
                else:
                    # the writer was spawned at the first event and held back `hold` ms from then
                    rate = written / ((final - (first + hold * 1_000_000)) / 1e9) / 1e6
                print("| %d | %s | %d | %.2f | %.3f | %.1f |" % (written, mode, lost, rate, (final - exited) / 1e9,
                                                                size / written))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
