"""Source lines of stack frames (issue 10, schema version 4): the writer reads the program's DWARF through
libdw, in its own process, into frame_lines (inlined functions as extra depths); report shows
" (file.c:LINE)" and "[inlined]" frames, report --json adds stack_frames beside each stack.

The client (tests/clients/dwarf_client.c) allocates inside an always-inlined function; the lines it must
give are found by the LINE: markers in its source, so the expectations are exact and follow edits.
"""
import json
import os
import shutil
import subprocess
import unittest

from cmtlib import BUILD, ROOT, TraceTest, client, run, CUMEMTRACE, sim_env

SRC = os.path.join(ROOT, "tests", "clients", "dwarf_client.c")
WRITER = os.path.join(BUILD, "interpose", "cumemtrace-writer")


def marker_line(tag):
    with open(SRC) as f:
        for n, text in enumerate(f, 1):
            if "/* LINE:%s */" % tag in text:
                return n
    raise AssertionError("no LINE:%s marker in %s" % (tag, SRC))


def writer_has_libdw():
    try:
        with open(WRITER, "rb") as f:
            return b"libdw.so" in f.read()
    except OSError:
        return False


def real(p):
    return os.path.realpath(p) if p else p


@unittest.skipUnless(writer_has_libdw(), "the writer was built without libdw (Debian: libdw-dev): no source lines")
class DwarfLines(TraceTest):
    def report_json(self, db):
        p = run([CUMEMTRACE, "report", "--json", db], sim_env(preload=False))
        return json.loads(p.stdout)

    def alloc_frame(self, db):
        """frame_id of the allocating frame (depth 0 of the one allocation's stack)."""
        return self.scalar(db, "SELECT s.frame_id FROM events e JOIN ops o ON o.op = e.op"
                               " JOIN stacks s ON s.stack_id = e.stack_id AND s.depth = 0"
                               " WHERE o.name = 'alloc' AND e.result = 0")

    def test_inlined_allocation_has_exact_lines(self):
        p, db = self.trace([client("dwarf_client")])
        alloc, inl, main = marker_line("alloc"), marker_line("inlined-call"), marker_line("main-call")
        fid = self.alloc_frame(db)
        rows = self.query(db, "SELECT depth, function, file, line FROM frame_lines WHERE frame_id = ? ORDER BY depth",
                          (fid,))
        self.assertEqual([(d, f, real(fl), l) for d, f, fl, l in rows],
                         [(0, "grab", real(SRC), alloc), (1, "dwarf_layer", real(SRC), inl)])
        # the next frame: main, at the call of dwarf_layer
        rows = self.query(db, "SELECT l.depth, l.function, l.line FROM stacks s"
                              " JOIN frame_lines l ON l.frame_id = s.frame_id"
                              " WHERE s.stack_id = (SELECT stack_id FROM stacks WHERE frame_id = ?) AND s.depth = 1",
                          (fid,))
        self.assertEqual(rows, [(0, "main", main)])
        # the view, as a debugger lists the stack
        rows = self.query(db, "SELECT depth, inline_depth, function, line FROM stack_lines WHERE stack_id ="
                              " (SELECT stack_id FROM stacks WHERE frame_id = ?) AND depth < 2"
                              " ORDER BY depth, inline_depth", (fid,))
        self.assertEqual(rows, [(0, 0, "grab", alloc), (0, 1, "dwarf_layer", inl), (1, 0, "main", main)])

        top = self.report_json(db)["top_at_peak"][0]
        self.assertEqual(top["bytes"], 3 << 20)
        self.assertEqual(top["stack"][:2], ["dwarf_layer", "main"])  # names unchanged
        self.assertEqual(len(top["stack_frames"]), len(top["stack"]))
        f0, f1 = top["stack_frames"][:2]
        self.assertEqual((real(f0["file"]), f0["line"]), (real(SRC), inl))
        self.assertEqual([(i["function"], real(i["file"]), i["line"]) for i in f0["inlined"]],
                         [("grab", real(SRC), alloc)])
        self.assertEqual((real(f1["file"]), f1["line"], f1["inlined"]), (real(SRC), main, []))

        text = run([CUMEMTRACE, "report", db], sim_env(preload=False)).stdout
        want = ["grab (dwarf_client.c:%d) [inlined]" % alloc, "dwarf_layer (dwarf_client.c:%d)" % inl,
                "main (dwarf_client.c:%d)" % main]
        lines = [l.strip() for l in text.splitlines()]
        at = [i for i, l in enumerate(lines) if l.endswith(want[0])]
        self.assertEqual(len(at), 1, text)
        self.assertEqual(lines[at[0] + 1:at[0] + 3], want[1:])

    def test_without_debug_information_no_lines_and_nothing_breaks(self):
        p, db = self.trace([client("dwarf_client_nodebug")])
        fid = self.alloc_frame(db)
        self.assertEqual(self.scalar(db, "SELECT function FROM frames WHERE frame_id = ?", (fid,)), "dwarf_layer")
        # no line for any frame of the client itself (libc may have its debug file installed)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM frame_lines l JOIN frames f USING (frame_id)"
                                         " JOIN modules m USING (module_id) WHERE m.path LIKE '%dwarf_client_nodebug'"), 0)
        top = self.report_json(db)["top_at_peak"][0]
        self.assertEqual(top["stack"][:2], ["dwarf_layer", "main"])
        self.assertEqual(top["stack_frames"][0], {"file": None, "line": None, "inlined": []})
        text = run([CUMEMTRACE, "report", db], sim_env(preload=False)).stdout
        self.assertNotIn("[inlined]", text)
        self.assertNotIn("dwarf_client.c", text)

    @unittest.skipUnless(shutil.which("objcopy") and shutil.which("strip"), "objcopy and strip (binutils) are absent")
    def test_stripped_module_gets_lines_from_its_debug_file(self):
        """A stripped program whose DWARF is in a separate file named by .gnu_debuglink (next to it, as
        objcopy --only-keep-debug makes it) gets the same lines; removed, it gets none."""
        exe = self.path("dwarf_client")
        shutil.copyfile(client("dwarf_client"), exe)
        os.chmod(exe, 0o755)
        subprocess.run(["objcopy", "--only-keep-debug", exe, exe + ".debug"], check=True)
        subprocess.run(["strip", "--strip-debug", exe], check=True)
        subprocess.run(["objcopy", "--add-gnu-debuglink=" + exe + ".debug", exe], check=True, cwd=self.tmp)
        with open(exe, "rb") as f:
            self.assertNotIn(b".debug_info", f.read())  # really stripped
        p, db = self.trace([exe], name="with.db")
        rows = self.query(db, "SELECT depth, function, line FROM frame_lines WHERE frame_id = ? ORDER BY depth",
                          (self.alloc_frame(db),))
        self.assertEqual(rows, [(0, "grab", marker_line("alloc")), (1, "dwarf_layer", marker_line("inlined-call"))])
        os.unlink(exe + ".debug")
        p, db = self.trace([exe], name="without.db")
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM frame_lines WHERE frame_id = ?",
                                     (self.alloc_frame(db),)), 0)

    def test_libc_lines_by_build_id_when_its_debug_file_is_installed(self):
        """libc is shipped stripped; Debian's libc6-dbg puts its DWARF under /usr/lib/debug/.build-id/xx/
        yyyy.debug, which the writer finds by the build id alone."""
        p, db = self.trace([client("dwarf_client")])
        rows = self.query(db, "SELECT path, build_id FROM modules WHERE path LIKE '%/libc.so.6'")
        self.assertEqual(len(rows), 1)
        path, bid = rows[0]
        debug = "/usr/lib/debug/.build-id/%s/%s.debug" % (bid[:2], bid[2:])
        if not os.path.exists(debug):
            self.skipTest("libc's debug file is not installed (%s; Debian: libc6-dbg)" % debug)
        with open(path, "rb") as f:
            self.assertNotIn(b".debug_info", f.read())
        n = self.scalar(db, "SELECT count(*) FROM frame_lines l JOIN frames f USING (frame_id)"
                            " JOIN modules m USING (module_id) WHERE m.path = ? AND l.line > 0", (path,))
        self.assertGreaterEqual(n, 1)


if __name__ == "__main__":
    unittest.main()
