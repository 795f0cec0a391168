"""Source lines of stack frames (issue 10, schema version 4): the writer reads the program's DWARF through
libdw, in its own process, into frame_lines (inlined functions as extra depths); report shows
" (file.c:LINE)" and "[inlined]" frames, report --json adds stack_frames beside each stack; so do flame
(folded: "func (file.c:LINE)", inlined functions frames of their own marked "_[i]"), diff (text and JSON) and
the viewer page's data ("l" per stack; tests/test_viewer.py drives the page itself).

The client (tests/clients/dwarf_client.c) allocates inside an always-inlined function; the lines it must
give are found by the LINE: markers in its source, so the expectations are exact and follow edits.
"""
import json
import os
import re
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

    def folded(self, db):
        """`flame` output read as flamegraph.pl reads it: the count after the last space, frames split at ';'."""
        out = run([CUMEMTRACE, "flame", db], sim_env(preload=False)).stdout
        rows = []
        for line in out.splitlines():
            m = re.match(r"^(.*)\s+?(\d+(?:\.\d*)?)$", line)
            self.assertIsNotNone(m, line)
            rows.append((m.group(1).split(";"), int(m.group(2))))
        return rows

    def test_flame_folded_has_lines_and_inlined_frames(self):
        """Each frame `function (file.c:LINE)`; the inlined grab a frame of its own after dwarf_layer (innermost
        last) with perf's and flamegraph.pl's `_[i]` mark; --json carries the report's stack_frames."""
        p, db = self.trace([client("dwarf_client")])
        alloc, inl, main = marker_line("alloc"), marker_line("inlined-call"), marker_line("main-call")
        rows = self.folded(db)
        self.assertEqual(len(rows), 1, rows)
        frames, n = rows[0]
        self.assertEqual(n, 3 << 20)
        self.assertEqual(frames[-3:], ["main (dwarf_client.c:%d)" % main, "dwarf_layer (dwarf_client.c:%d)" % inl,
                                       "grab (dwarf_client.c:%d)_[i]" % alloc])
        js = json.loads(run([CUMEMTRACE, "flame", "--json", db], sim_env(preload=False)).stdout)
        top = self.report_json(db)["top_at_peak"][0]
        self.assertEqual([(x["bytes"], x["stack"], x["stack_frames"]) for x in js],
                         [(3 << 20, top["stack"], top["stack_frames"])])

    def diff_both(self, exe):
        """diff of two runs of exe: (text, JSON)."""
        p, a = self.trace([client(exe)], name="a.db")
        p, b = self.trace([client(exe)], name="b.db")
        text = run([CUMEMTRACE, "diff", a, b], sim_env(preload=False)).stdout
        js = json.loads(run([CUMEMTRACE, "diff", "--json", a, b], sim_env(preload=False)).stdout)
        return text, js

    def test_diff_shows_lines_and_inlined_frames(self):
        """Growth by stack: the row's frames as the report lists them, the first beside the figures; the JSON
        stacks keep "stack" and add the report's "stack_frames" beside it."""
        text, js = self.diff_both("dwarf_client")
        alloc, inl, main = marker_line("alloc"), marker_line("inlined-call"), marker_line("main-call")
        lines = text.splitlines()
        at = [i for i, l in enumerate(lines) if l.endswith("grab (dwarf_client.c:%d) [inlined]" % alloc)]
        self.assertEqual(len(at), 1, text)
        self.assertEqual(lines[at[0]].split(), ["3.0", "MiB", "3.0", "MiB", "0", "B", "grab",
                                                "(dwarf_client.c:%d)" % alloc, "[inlined]"])
        self.assertEqual(lines[at[0] + 1:at[0] + 3], [" " * 37 + "dwarf_layer (dwarf_client.c:%d)" % inl,
                                                      " " * 37 + "main (dwarf_client.c:%d)" % main])
        st = js["stacks"]
        self.assertEqual(len(st), 1)
        self.assertEqual((st[0]["a_bytes"], st[0]["b_bytes"], st[0]["delta_bytes"]), (3 << 20, 3 << 20, 0))
        self.assertEqual(st[0]["stack"][:2], ["dwarf_layer", "main"])
        self.assertEqual(len(st[0]["stack_frames"]), len(st[0]["stack"]))
        f0, f1 = st[0]["stack_frames"][:2]
        self.assertEqual((real(f0["file"]), f0["line"]), (real(SRC), inl))
        self.assertEqual([(i["function"], real(i["file"]), i["line"]) for i in f0["inlined"]],
                         [("grab", real(SRC), alloc)])
        self.assertEqual((real(f1["file"]), f1["line"], f1["inlined"]), (real(SRC), main, []))

    def test_viewer_data_has_lines_once(self):
        """The page's stack carries "l" (analysis/html.h): per frame [file, line, inlined function, file, line];
        the source file's name is in "strings" once."""
        p, db = self.trace([client("dwarf_client")])
        for verb in (["report", "--html"], ["timeline", "-o"]):
            page = self.path("%s.html" % verb[0])
            run([CUMEMTRACE] + verb + [page, db], sim_env(preload=False))
            with open(page, encoding="utf-8") as f:
                d = json.loads(re.search(r"<script type='application/json' id='cmt-data'>(.*?)</script>", f.read(),
                                         re.S).group(1))
            with self.subTest(verb[0]):
                self.page_lines(d)

    def page_lines(self, d):
        S = d["strings"]
        lv = d["runs"][0]["levels"]["driver"]
        self.assertEqual(lv["size"], [3 << 20])
        k = d["stacks"][lv["stack"][0]]
        self.assertEqual([S[f] for f in k["f"][:2]], ["dwarf_layer", "main"])
        l0, l1 = k["l"][:2]
        self.assertEqual((real(S[l0[0]]), l0[1], S[l0[2]], real(S[l0[3]]), l0[4]),
                         (real(SRC), marker_line("inlined-call"), "grab", real(SRC), marker_line("alloc")))
        self.assertEqual(len(l0), 5)
        self.assertEqual((real(S[l1[0]]), l1[1], len(l1)), (real(SRC), marker_line("main-call"), 2))
        self.assertEqual(sum(1 for x in S if x.endswith("/dwarf_client.c")), 1)

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
        # flame, diff and the page as before: the client's frames bare
        frames, n = self.folded(db)[0]
        self.assertEqual((frames[-2:], n), (["main", "dwarf_layer"], 3 << 20))
        self.assertNotIn("_[i]", ";".join(frames))
        dtext, js = self.diff_both("dwarf_client_nodebug")
        self.assertNotIn("dwarf_client.c", dtext)
        self.assertNotIn("[inlined]", dtext)
        row = [l for l in dtext.splitlines() if l.endswith("dwarf_layer")]
        self.assertEqual(len(row), 1, dtext)
        self.assertEqual(js["stacks"][0]["stack_frames"][:2], [{"file": None, "line": None, "inlined": []}] * 2)
        page = self.path("r.html")
        run([CUMEMTRACE, "report", "--html", page, db], sim_env(preload=False))
        with open(page, encoding="utf-8") as f:
            html = f.read()
        self.assertNotIn("dwarf_client.c", html)

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
