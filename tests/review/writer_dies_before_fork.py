"""Reproducer (not a registered test: it takes 10 s): the process spawned as the writer dies by a signal
before it forks its watchdog (the OOM killer at its start; here a stand-in writer that SIGKILLs itself).

Expected: the program hears at once, in one line on its stderr, that its trace writer died.
Found (main at 8d1cc8a): the program's first recorded call waits READY_WAIT_MS (10 s, interpose/cmt_capture.c)
for READY, then the program runs on recording nothing, with no message and no file: nothing watches the
writer until it has forked, and the interposer's wait for READY does not look at the writer's liveness.

    CMT_BUILD_DIR=$PWD/build python3 tests/review/writer_dies_before_fork.py
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cmtlib  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    fake = os.path.join(tmp, "dying-writer")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\nkill -9 $$\n")
    os.chmod(fake, 0o755)
    out = os.path.join(tmp, "t.db")
    t = time.monotonic()
    p = subprocess.run([cmtlib.client("threads_client"), "1", "10"], capture_output=True, text=True, timeout=60,
                       env=cmtlib.sim_env(output=out, extra={"CUMEMTRACE_WRITER": fake}))
    took = time.monotonic() - t
    print("exit %d after %.2f s; stderr %r; trace file: %s" % (p.returncode, took, p.stderr, os.path.exists(out)))
    ok = took < 2 and len(p.stderr.splitlines()) == 1 and "writer" in p.stderr
    print("OK" if ok else "FAIL: the program waited %.1f s and was told nothing" % took)
    sys.exit(0 if ok else 1)
