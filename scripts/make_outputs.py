"""Execute notebooks and save their outputs in place, the outputs `make docs` renders.

    python scripts/make_outputs.py nbs/07_guard.ipynb [more notebooks]    # `make outputs` runs it on every module notebook

Every code cell runs in order, except the cells that do not run on every machine (`#| slow`, `#| gpu`,
`#| eval: false`). Outputs are kept small and stable: execution counts are dropped, and the repository's folder and the
temporary folder are written as `.` and `<tmp>` so that no machine-specific path is stored. A cell that raises stops
the notebook, which is then left untouched, and the script exits 1 naming the notebook and the cell.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("IN_TEST", "1")
ROOT = Path(__file__).resolve().parents[1]
SKIP = {"#|slow", "#|gpu", "#|eval:false"}


def _skip(cell) -> bool:
    if cell.cell_type != "code":
        return True
    return bool({l.strip().replace(" ", "") for l in cell.source.splitlines() if l.strip().startswith("#|")} & SKIP)


def _scrub(text: str) -> str:
    tmp = re.escape(str(Path(tempfile.gettempdir()).resolve()))
    text = text.replace(str(ROOT) + "/", "").replace(str(ROOT), ".")
    return re.sub(tmp + r"/[^\s'\"]*", "<tmp>", text)


def _clean(nb) -> None:
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        c.execution_count = None
        for o in c.get("outputs", []):
            o.pop("execution_count", None)
            if "text" in o:
                o["text"] = _scrub("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
            for k, v in (o.get("data") or {}).items():
                if k.startswith("text/"):
                    o["data"][k] = _scrub("".join(v) if isinstance(v, list) else v)


def run(path: Path) -> None:
    from fastcore.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell

    path = path.resolve()
    nb = read_nb(path)
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        CaptureShell(path=path.parent).run_all(nb, exc_stop=True, preproc=_skip)
    finally:
        os.chdir(cwd)
    _clean(nb)
    write_nb(nb, path)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python scripts/make_outputs.py NOTEBOOK.ipynb [...]")
    for p in map(Path, sys.argv[1:]):
        if not p.is_file():
            sys.exit(f"make_outputs: {p}: no such notebook")
        try:
            run(p)
        except Exception as e:
            sys.exit(f"make_outputs: {p}: {type(e).__name__}: {e}")
        print(f"make_outputs: {p}: outputs saved")
