"""The shape checks of the library and its notebooks, the ones `tests/repo/test_code_health.py` asserts.

    python scripts/code_health.py                  # every check, every module; exit 1 on a finding
    python scripts/code_health.py train guard      # only these modules (and their notebooks)

Checks: library lines over 120 characters (but the two lines nbdev writes itself), exported functions over 60 lines, `;`-joined statements, a module importing
another module's private name, import cycles between modules, and module notebooks where fewer than half of the
example cells have a saved output.
"""

from __future__ import annotations

import ast
import io
import json
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "llmops_nb"
NBS = ROOT / "nbs"
MAX_LINE = 120
MAX_FUNC = 60
MIN_OUTPUTS = 0.5
# cells that are not examples: exported code, hidden tests, set-up, and cells that do not run on every machine
NOT_EXAMPLE = ("export", "exporti", "exports", "hide", "default_exp", "slow", "gpu", "eval:false", "exec_doc")


def modules() -> dict:
    "Module name -> path of every generated library module."
    return {p.stem: p for p in sorted(LIB.glob("*.py")) if p.stem not in ("_modidx", "__init__")}


def _generated(i: int, line: str) -> bool:
    "Lines nbdev writes itself: the module docstring (the notebook's summary) and the first line of `__all__`."
    return i == 1 and line.startswith('"""') or line.startswith("__all__ = [")


def long_lines(path: Path) -> list:
    return [f"{path.name}:{i}: line of {len(l)} characters" for i, l in enumerate(path.read_text().splitlines(), 1)
            if len(l) > MAX_LINE and not _generated(i, l)]


def long_functions(path: Path) -> list:
    out = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            size = n.end_lineno - n.lineno + 1
            if size > MAX_FUNC:
                out.append(f"{path.name}:{n.lineno}: function {n.name} is {size} lines")
    return out


def semicolons(path: Path) -> list:
    toks = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [f"{path.name}:{t.start[0]}: statements joined with ';'" for t in toks if t.type == tokenize.OP and t.string == ";"]


def _imports(path: Path) -> list:
    "(imported module, names) of every `llmops_nb` import in `path`, at any depth."
    out = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            mod = n.module or ""
            if n.level:
                out.append((mod.split(".")[0] if mod else "", [a.name for a in n.names]))
            elif mod == "llmops_nb":
                out += [(a.name, []) for a in n.names]
            elif mod.startswith("llmops_nb."):
                out.append((mod.split(".")[1], [a.name for a in n.names]))
        elif isinstance(n, ast.Import):
            out += [(a.name.split(".")[1], []) for a in n.names if a.name.startswith("llmops_nb.")]
    return out


def private_imports(name: str, path: Path) -> list:
    return [f"{path.name}: imports private {x} from {mod}" for mod, names in _imports(path) if mod and mod != name
            for x in names if x.startswith("_") and not x.startswith("__")]


def import_graph() -> dict:
    mods = modules()
    return {m: sorted({t for t, _ in _imports(p) if t in mods and t != m}) for m, p in mods.items()}


def cycles(graph: dict) -> list:
    "Strongly connected components with more than one module (Tarjan)."
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _flags(src: str) -> set:
    "The directives of a cell: `#| export` -> 'export', `#| eval: false` -> 'eval:false'."
    out = set()
    for l in src.splitlines():
        if l.strip().startswith("#|"):
            d = l.strip()[2:].strip()
            out.add(d.replace(" ", "") if d.startswith("eval") else (d.split() or [""])[0])
    return out


def notebook_of() -> dict:
    "Module name -> the notebook that exports it (its `#| default_exp`)."
    out = {}
    for p in sorted(NBS.glob("*.ipynb")):
        for c in json.loads(p.read_text())["cells"][:6]:
            src = "".join(c["source"])
            if c["cell_type"] == "code" and "#| default_exp" in src:
                out[src.split("default_exp", 1)[1].split()[0]] = p
    return out


def output_share(nb: Path) -> tuple:
    "(example cells with a saved output, example cells) of a notebook."
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    ex = [c for c in cells if not (_flags("".join(c["source"])) & set(NOT_EXAMPLE))]
    return sum(bool(c.get("outputs")) for c in ex), len(ex)


def findings(only: list = ()) -> list:
    mods = {m: p for m, p in modules().items() if not only or m in only}
    out = []
    for m, p in mods.items():
        out += long_lines(p) + long_functions(p) + semicolons(p) + private_imports(m, p)
    out += [f"import cycle: {' <-> '.join(c)}" for c in cycles(import_graph()) if not only or set(c) & set(only)]
    nbs = notebook_of()
    for m in mods:
        if m in nbs:
            have, total = output_share(nbs[m])
            if total and have / total < MIN_OUTPUTS:
                out.append(f"{nbs[m].name}: {have} of {total} example cells have a saved output (at least half must)")
    return out


if __name__ == "__main__":
    found = findings(sys.argv[1:])
    print("\n".join(found) or "code health: no findings")
    print(f"{len(found)} findings", file=sys.stderr)
    sys.exit(1 if found else 0)
