#!/usr/bin/env python3
"""Embeds a SQL file as a C string: embed_sql.py INPUT.sql OUTPUT.c SYMBOL (runs at build time)."""
import sys

src, dst, symbol = sys.argv[1:4]
with open(src, encoding="utf-8") as f:
    text = f.read()
lines = ['/* Generated from %s by schema/embed_sql.py. Do not edit. */' % src.split("/")[-1],
         "const char %s[] =" % symbol]
for line in text.splitlines():
    escaped = line.replace("\\", "\\\\").replace('"', '\\"')
    lines.append('    "%s\\n"' % escaped)
lines.append(";")
with open(dst, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
