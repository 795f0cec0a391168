#!/usr/bin/env python3
"""Embeds one file of the viewer (viewer.js, viewer.css) as a C string for analysis/html.c:
embed.py INPUT OUTPUT.c SYMBOL (runs at build time). Refuses text that would end its <script> or <style>
element early: the page inlines it verbatim."""
import re
import sys

src, dst, symbol = sys.argv[1:4]
with open(src, encoding="utf-8") as f:
    text = f.read()
bad = re.search(r"</(script|style)|<!--", text, re.IGNORECASE)
if bad:
    sys.exit("embed.py: %s contains %r, which would end the inlined element" % (src, bad.group(0)))
lines = ["/* Generated from %s by analysis/viewer/embed.py. Do not edit. */" % src.split("/")[-1],
         "const char %s[] =" % symbol]
for line in text.splitlines():
    escaped = line.replace("\\", "\\\\").replace('"', '\\"').replace("??", "?\\?")
    lines.append('    "%s\\n"' % escaped)
lines.append(";")
with open(dst, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
