"Render nbs/index.ipynb to README.md without quarto: drop hidden cells and #| directives, keep prose and code."
import sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parent.parent
nb = nbformat.read(root / "nbs" / "index.ipynb", as_version=4)
cells = []
for c in nb.cells:
    lines = c.source.splitlines()
    if c.cell_type == "code" and any(l.strip() in ("#| hide", "#|hide") for l in lines): continue
    c.source = "\n".join(l for l in lines if not l.lstrip().startswith("#|")).strip()
    if c.source: cells.append(c)
nb.cells = cells
body, _ = MarkdownExporter().from_notebook_node(nb)
out = root / "README.md"
text = "<!-- generated from nbs/index.ipynb by `make readme`: edit the notebook, not this file -->\n\n" + body.strip() + "\n"
if "--check" in sys.argv:
    sys.exit(0 if out.exists() and out.read_text() == text else "README.md is out of step with nbs/index.ipynb: run `make readme`")
out.write_text(text)
print(f"wrote {out}")
