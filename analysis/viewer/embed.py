#!/usr/bin/env python3
"""Embeds the viewer's files (analysis/viewer/) as one C string for analysis/html.c:
embed.py OUTPUT.c SYMBOL INPUT... (runs at build time). Several .js inputs are one script: concatenated in the
order given inside one function, so their functions and variables are shared and nothing leaks to the page's
global scope. Refuses text that would end its <script> or <style> element early: the page inlines it verbatim."""
import os
import re
import sys

dst, symbol, srcs = sys.argv[1], sys.argv[2], sys.argv[3:]
parts = []
for src in srcs:
    with open(src, encoding="utf-8") as f:
        text = f.read()
    bad = re.search(r"</(script|style)|<!--", text, re.IGNORECASE)
    if bad:
        sys.exit("embed.py: %s contains %r, which would end the inlined element" % (src, bad.group(0)))
    parts.append(text)
text = "".join(parts)
if srcs and all(s.endswith(".js") for s in srcs):
    text = "(function () {\n  'use strict';\n" + text + "})();\n"
lines = ["/* Generated from %s by analysis/viewer/embed.py. Do not edit. */" % ", ".join(map(os.path.basename, srcs)),
         "const char %s[] =" % symbol]
for line in text.splitlines():
    escaped = line.replace("\\", "\\\\").replace('"', '\\"').replace("??", "?\\?")
    lines.append('    "%s\\n"' % escaped)
lines.append(";")
with open(dst, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
