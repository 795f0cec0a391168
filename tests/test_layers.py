"""The analyzer's shape (issue 10), checked on its sources so that it stays that way:

- data flows one way: every file of analysis/ has a layer (verbs, renderers, analyses, the pass and its
  observers, opening traces, shared utilities) and depends only on its own layer or lower ones, never up;
- no cycle: no two files depend on each other, directly or through others (tests/deps.py reads the call graph
  from the sources: a file depends on another when it calls a function or reads a variable the other defines);
- no file of over 650 lines, the one exception named with its reason;
- the analyzer never writes a trace: no SQL that writes and no call of schema/cmt_db.h's writing functions in
  analysis/ (the importers, importers/, are the writers apart from it);
- one contract: no SQL in the analyzer or the importers names an op, kind or api by its number (they are
  bound from schema/cmt_events.h, or looked up by name in the trace's own tables).
"""
import os
import re
import unittest

import deps

HERE = os.path.dirname(os.path.abspath(__file__))
ANALYSIS = os.path.join(HERE, "..", "analysis")
IMPORTERS = os.path.join(HERE, "..", "importers")

# Lowest first. A file may depend on files of its own layer or of a lower one.
LAYERS = [
    ("utilities", {"util.c", "sbuf.c", "maps.c"}),
    ("opening traces", {"trace.c", "rows.c", "stacks.c"}),
    ("the pass and its observers", {"pass.c", "load.c", "timeline.c", "ranges.c"}),
    ("analyses (models)", {"groups.c", "report.c", "torch.c", "rules.c", "components.c", "alloclevel.c",
                           "driverlevel.c", "diff.c", "ledger.c", "ranks.c", "allocmodel.c", "whatif.c", "whatif_run.c"}),
    ("renderers", {"chart.c", "verdict.c"}),  # plus render_*.c and html*.c
    ("verbs", {"main.c"}),  # plus cmd_*.c
]
LONG_FILES = {
    # one concern: the model of PyTorch's caching allocator (pools, best fit, split and merge, expandable
    # segments, garbage collection, the release-and-retry path); splitting it would scatter one algorithm
    "allocmodel.c",
}
MAX_LINES = 650


def layer_of(name):
    if name.startswith("cmd_"):
        return len(LAYERS) - 1
    if name.startswith("render_") or name.startswith("html"):
        return len(LAYERS) - 2
    for i, (_, files) in enumerate(LAYERS):
        if name in files:
            return i
    return None


class Layers(unittest.TestCase):
    def setUp(self):
        self.deps, self.lines = deps.graph(ANALYSIS)

    def test_every_file_has_a_layer(self):
        missing = sorted(n for n in self.deps if layer_of(n) is None)
        self.assertEqual(missing, [], "give these files a layer in tests/test_layers.py")

    def test_dependencies_point_down(self):
        up = []
        for n, ds in sorted(self.deps.items()):
            for d in sorted(ds):
                if layer_of(n) is not None and layer_of(d) is not None and layer_of(d) > layer_of(n):
                    up.append("%s (%s) -> %s (%s)" % (n, LAYERS[layer_of(n)][0], d, LAYERS[layer_of(d)][0]))
        self.assertEqual(up, [])

    def test_no_cycle(self):
        self.assertEqual(deps.cycles(self.deps), [])

    def test_the_check_sees_a_cycle(self):
        """The cycle finder itself: a -> b -> c -> a is found, a tree is not."""
        self.assertEqual(deps.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}), [["a", "b", "c", "a"]])
        self.assertEqual(deps.cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}), [])

    def test_the_graph_reads_calls(self):
        """Known edges of the real graph: the verb calls the loader, the pass tells observers without naming
        them, the report renderer draws the allocator level's section."""
        self.assertIn("load.c", self.deps["cmd_report.c"])
        self.assertIn("render_torch.c", self.deps["render_text.c"])
        self.assertNotIn("timeline.c", self.deps["pass.c"])
        self.assertNotIn("ranges.c", self.deps["pass.c"])

    def test_files_are_short(self):
        long = sorted("%s: %d lines" % (n, k) for n, k in self.lines.items() if k > MAX_LINES and n not in LONG_FILES)
        self.assertEqual(long, [])

    def sources(self, exts, top=ANALYSIS):
        for root, _, files in os.walk(top):
            for f in sorted(files):
                if f.endswith(exts):
                    path = os.path.join(root, f)
                    with open(path, encoding="utf-8") as fh:
                        yield os.path.relpath(path, top), fh.read()

    def test_the_analyzer_never_writes_a_trace(self):
        writing = re.compile(r"\b(INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|VIEW)|DROP\s+"
                             r"(TABLE|INDEX|VIEW)|ALTER\s+TABLE)\b")
        calls = re.compile(r"\bcmt_db_(create|open_update|migrate|finalize|exec)\s*\(")
        found = []
        for name, text in self.sources((".c", ".h", ".py")):
            if name.startswith("export" + os.sep):
                continue  # Parquet files, never traces: cmd_export.c refuses a trace as OUT
            for m in writing.finditer(text):
                found.append("%s: %s" % (name, m.group(0)))
            for m in calls.finditer(text):
                found.append("%s: %s" % (name, m.group(0)))
        self.assertEqual(found, [])

    def test_no_vocabulary_numbers_in_sql(self):
        number = re.compile(r"\b(op|kind|api)\s*(=|<>|!=|IN\s*\()\s*\d")
        found = []
        sources = list(self.sources((".c", ".py"))) + list(self.sources((".c", ".py"), IMPORTERS))
        self.assertTrue(any(n.endswith("torch_import.c") for n, _ in sources))
        for name, text in sources:
            for lit in re.findall(r'"(?:\\.|[^"\\\n])*"', text):
                if number.search(lit):
                    found.append("%s: %s" % (name, lit))
        self.assertEqual(found, [])


if __name__ == "__main__":
    unittest.main()
