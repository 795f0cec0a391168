#!/usr/bin/env python3
"""bench/torch_step.py: what tracing costs a real PyTorch training step (issue 7, section 4).

    python3 bench/torch_step.py BUILD_DIR [--rounds N] [--steps N] [GPT OPTIONS...]

Runs examples/torch/gpt.py on the simulated RTX 4090 in five ways, interleaved round by round so that the
machine's noise falls on all of them alike:
  untraced          the simulated driver alone (LD_LIBRARY_PATH)
  torch-history     untraced, PyTorch's own _record_memory_history on (what `--torch` is measured against)
  traced            cumemtrace run --sim-gpu RTX4090
  traced-torch      cumemtrace run --torch --sim-gpu RTX4090
  preload           LD_PRELOAD=libcumemtrace.so, no launcher
and prints, per way, the median time per training step (first step left out: warm-up, cuBLAS handles),
its ratio to the untraced median of the same run, and the largest resident set of the process.

Kernels do not run on the simulated GPU, so a step here is PyTorch's CPU work alone: the ratios are the
worst case of what tracing adds to a real step, whose time is mostly the GPU's. A benchmark, not a test:
nothing here passes or fails. Results go in bench/RESULTS.md.
"""
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
    if not argv or argv[0].startswith("-"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    build = os.path.abspath(argv[0])
    rounds, steps, extra = 5, 12, []
    i = 1
    while i < len(argv):
        if argv[i] == "--rounds":
            rounds = int(argv[i + 1]); i += 2
        elif argv[i] == "--steps":
            steps = int(argv[i + 1]); i += 2
        else:
            extra.append(argv[i]); i += 1
    py = subprocess.run([os.path.join(ROOT, "scripts", "torch-env")], stdout=subprocess.PIPE, text=True,
                        check=True).stdout.strip()
    cmt = os.path.join(build, "analysis", "cumemtrace")
    lib = os.path.join(build, "interpose", "libcumemtrace.so")
    simdir = os.path.join(build, "simgpu")
    gpt = [py, os.path.join(ROOT, "examples", "torch", "gpt.py"), "--steps", str(steps)] + extra
    tmp = os.path.join(build, "bench-torch-step")
    os.makedirs(tmp, exist_ok=True)
    base = dict(os.environ)
    base.pop("LD_PRELOAD", None)
    sim = dict(base, LD_LIBRARY_PATH=simdir, SIMCUDA_GPU="RTX4090")
    ways = [
        ("untraced", gpt, sim),
        ("torch-history", gpt + ["--record-history"], sim),
        ("traced", [cmt, "run", "--sim-gpu", "RTX4090", "-o", os.path.join(tmp, "t.db"), "--"] + gpt, base),
        ("traced-torch", [cmt, "run", "--torch", "--sim-gpu", "RTX4090", "-o", os.path.join(tmp, "tt.db"), "--"] + gpt,
         base),
        ("preload", gpt, dict(sim, LD_PRELOAD=lib, CUMEMTRACE_OUTPUT=os.path.join(tmp, "p.db"))),
    ]
    times = {w[0]: [] for w in ways}
    rss = {w[0]: 0 for w in ways}
    for r in range(rounds):
        for name, cmd, env in ways:
            with open(os.path.join(tmp, "out"), "w+") as out, open(os.path.join(tmp, "err"), "w+") as err:
                p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
                # wait4: this process's own rusage, its largest resident set covering the children it waited
                # for (run's program)
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                out.seek(0)
                err.seek(0)
                stdout, stderr = out.read(), err.read()
            line = [l for l in stdout.splitlines() if l.startswith("TORCH_MEMORY ")]
            if p.returncode != 0 or not line:
                print("%s failed (%d): %s" % (name, p.returncode, stderr[-2000:]), file=sys.stderr)
                return 1
            times[name] += json.loads(line[0][len("TORCH_MEMORY "):])["step_s"][1:]
            rss[name] = max(rss[name], ru.ru_maxrss)
        print("round %d/%d done" % (r + 1, rounds), file=sys.stderr)
    base_med = statistics.median(times["untraced"])
    print("%-14s %12s %8s %12s" % ("way", "step (ms)", "ratio", "max RSS"))
    for name, _, _ in ways:
        med = statistics.median(times[name])
        print("%-14s %12.3f %8.3f %9.1f MiB" % (name, med * 1e3, med / base_med, rss[name] / 1024))
    print("(%d rounds x %d steps, first step of each run left out; gpt.py %s)" % (rounds, steps, " ".join(extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
