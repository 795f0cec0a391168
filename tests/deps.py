"""deps.py: the analyzer's source dependency graph, read from the sources themselves.

A file depends on another when it calls a function (or reads a variable) that the other defines
non-static. The shape issue 10 asks for is checked on this graph: no cycle (so no two files depend on
each other) and a direction (verbs -> renderers -> analyses -> the pass -> opening traces -> util). It is
a static reading with regular expressions over comment- and string-free text: enough for our C, which
defines one function per `NAME(...) {` at the start of a line.

Used by tests/test_layers.py; `python3 tests/deps.py [DIR]` prints the graph and any cycle.
"""
import os
import re
import sys

_COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*', re.S)
_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])\'')
# a definition: at the start of a line, a type and a name, a parameter list, then the body's brace
_DEF = re.compile(r'^(?!static\b)(?!typedef\b)(?!extern\b)[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*\(([^;{}]*?)\)\s*\{',
                  re.M)
_VAR = re.compile(r'^(?!static\b)(?!extern\b)(?!typedef\b)(?:const\s+)?[A-Za-z_][\w \t\*]*?\b(cmt_\w+)\s*(?:\[[^\]]*\])?\s*=',
                  re.M)
_IDENT = re.compile(r'\b([A-Za-z_]\w*)\b')
_KEYWORDS = {'if', 'for', 'while', 'switch', 'return', 'sizeof', 'do'}


def clean(text):
    """The text without comments, string and character literals (kept as empty quotes)."""
    text = _COMMENT.sub(' ', text)
    return _STRING.sub('""', text)


def graph(directory):
    """{file: set(files it depends on)}, and {file: line count}, for every .c file of directory."""
    defs, idents, lines = {}, {}, {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith('.c'):
            continue
        with open(os.path.join(directory, name), encoding='utf-8') as f:
            raw = f.read()
        lines[name] = raw.count('\n')
        text = clean(raw)
        mine = {m.group(1) for m in _DEF.finditer(text) if m.group(1) not in _KEYWORDS}
        mine |= {m.group(1) for m in _VAR.finditer(text)}
        defs[name] = mine
        idents[name] = set(_IDENT.findall(text))
    owner = {}
    for name, mine in defs.items():
        for sym in mine:
            owner.setdefault(sym, name)
    deps = {}
    for name, used in idents.items():
        deps[name] = {owner[s] for s in used if s in owner and owner[s] != name}
    return deps, lines


def cycles(deps):
    """Every elementary cycle's smallest representative found by depth-first search (a few at most)."""
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(deps.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(deps):
        if n not in state:
            visit(n)
    return found


if __name__ == '__main__':
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', 'analysis')
    deps, lines = graph(d)
    for n in sorted(deps):
        print('%-22s %5d  -> %s' % (n, lines[n], ' '.join(sorted(deps[n]))))
    for c in cycles(deps):
        print('cycle: ' + ' -> '.join(c))
