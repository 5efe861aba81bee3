#!/usr/bin/env bash
# Static HTML of every notebook and runbook into _docs/: nbdev-docs where quarto exists, else nbconvert, offline.
#   make docs                                   # everything, into _docs/
#   DOCS_ONLY="index 00_core runbooks/doctor" DOCS_OUT=/tmp/docs bash scripts/make_docs.sh   # a subset, elsewhere
# Layout: _docs/index.html is nbs/index.ipynb, _docs/<name>.html each nbs/<name>.ipynb, _docs/runbooks/<name>.html
# each runbook. Links between notebooks (relative, or root-relative as in the README) point at the HTML pages; linked
# local files (the architecture picture, configs, deploy/, ...) are copied beside them, and a linked folder gets an
# index.html listing its files. The pages need no network: require.js, MathJax and mermaid are left out (the notebooks
# outputs are text, tables and PNG plots, which need none of them; TeX in markdown shows as written). Built in a temporary folder
# that then replaces the output folder, so a failed build leaves the previous docs in place.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v quarto >/dev/null 2>&1 && [ -z "${DOCS_ONLY:-}" ] && [ -z "${DOCS_OUT:-}" ]; then exec .venv/bin/nbdev-docs; fi
exec .venv/bin/python - "$@" <<'PY'
import html, os, re, shutil, sys, tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit
import jinja2, nbformat
from nbconvert import HTMLExporter
from nbconvert.filters.markdown import markdown2html

root = Path.cwd().resolve()
out = Path(os.environ.get("DOCS_OUT") or root / "_docs").resolve()
MAX_COPY = 5_000_000                       # a linked file above this size is not copied (its link is reported)

def sources() -> list:
    "The notebooks to build, as paths relative to the root: all of nbs/ and runbooks/, or those DOCS_ONLY names."
    everything = sorted(Path("nbs").glob("*.ipynb")) + sorted(Path("runbooks").glob("*.ipynb"))
    want = os.environ.get("DOCS_ONLY", "").split()
    if not want: return everything
    picked = []
    for w in want:
        w = w.removesuffix(".ipynb")
        hits = [p for p in everything if p.with_suffix("").as_posix() in (w, f"nbs/{w}")] or \
               [p for p in everything if p.with_suffix("").as_posix() == f"runbooks/{w}"]
        if not hits: sys.exit(f"make_docs: DOCS_ONLY names {w!r}, which is no notebook in nbs/ or runbooks/")
        picked += hits
    return list(dict.fromkeys(picked))

def page(src: Path) -> Path:
    "Output path (relative to the docs folder) of a notebook or markdown file: nbs/ at the top, others in their folder."
    rel = src.relative_to("nbs") if src.parts[0] == "nbs" else src
    return rel.with_suffix(".html")

def copied(src: Path) -> Path:
    "Output path of a linked local file or folder."
    return src.relative_to("nbs") if src.parts[0] == "nbs" else src

TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{% block extra_css %}<style>
body.jp-Notebook { max-width: 1100px; margin: 0 auto; padding: 1rem 2rem; }
nav.docs-nav { font-family: var(--jp-ui-font-family); font-size: 14px; padding: .5rem 0 1rem; border-bottom: 1px solid #ddd; margin-bottom: 1rem; }
.jp-RenderedHTMLCommon img { max-width: 100%; }
</style>{% endblock extra_css %}
{%- block body_header -%}{{ super() }}<nav class="docs-nav"><a href="docs:{{ resources.docs_home }}">llmops-nb documentation</a> · {{ resources.docs_source }}</nav>{%- endblock body_header -%}
"""
exporter = HTMLExporter(template_name="lab", template_file="offline.html.j2", extra_loaders=[jinja2.DictLoader({"offline.html.j2": TEMPLATE})],
                        exclude_input_prompt=True, exclude_output_prompt=True)

TAG, LINK = re.compile(r"<[a-zA-Z][^<>]*>"), re.compile(r'(\s(?:href|src)=")([^"]*)(")')   # text has its < escaped: only real tags match
broken, outside, extra = [], [], {}        # links that resolve nowhere; to pages not in a subset build; files to copy

def resolve(target: str, src: Path):
    "The root-relative Path a local link of `src` points at (relative to its folder, else to the root), or None."
    if not target or Path(target).is_absolute(): return None       # a site-absolute path: nothing here to point at
    for base in (src.parent, Path(".")):
        p = Path(os.path.normpath(base / target))
        if not p.as_posix().startswith("..") and (root / p).exists(): return p
    return None

def rewrite(doc: str, src: Path, built: set) -> str:
    "Point the local links of a page built from `src` at pages and copied files, relative to the page."
    here = page(src).parent
    def fix(m):
        url = html.unescape(m.group(2)); u = urlsplit(url)
        if u.scheme or u.netloc or not u.path or url.startswith(("#", "data:", "mailto:")): return m.group(0)
        target = resolve(unquote(u.path), src)
        if target is None:
            broken.append(f"{src}: {url}"); return m.group(0)
        if target.suffix == ".md": dest = extra[target] = page(target)        # markdown: rendered to a page
        elif target.suffix == ".ipynb" and target.parts[0] in ("nbs", "runbooks"):
            dest = page(target)                                   # another notebook's page (a subset build may lack it)
            if target not in built: outside.append(f"{src}: {url}")
        else:
            dest = copied(target) / ("index.html" if (root / target).is_dir() else "")
            extra[target] = copied(target)
        rel = os.path.relpath(dest, here).replace(os.sep, "/") + (f"#{u.fragment}" if u.fragment else "")
        return m.group(1) + html.escape(rel, quote=True) + m.group(3)
    return TAG.sub(lambda t: LINK.sub(fix, t.group(0)), doc)

def wrap(title: str, body: str, home: str) -> str:
    "A small standalone page for a markdown file or a folder listing."
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            '<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:0 auto;padding:1rem 2rem;line-height:1.5}'
            'pre,code{background:#f5f5f5}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px}</style>'
            f'</head><body><nav><a href="{home}">llmops-nb documentation</a></nav>{body}</body></html>\n')

def build(tmp: Path) -> int:
    todo = sources(); built = set(todo)
    for src in todo:
        nb = nbformat.read(src, as_version=4)
        dest = tmp / page(src)
        home = os.path.relpath("index.html", page(src).parent).replace(os.sep, "/")
        doc, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": src.stem}, "docs_home": home,
                                                            "docs_source": html.escape(src.as_posix())})
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(rewrite(doc, src, built).replace('href="docs:', 'href="'), encoding="utf-8")
    done = set()
    while pending := [t for t in extra if t not in done]:          # markdown pages can link more files
        for t in pending:
            done.add(t); dest = tmp / extra[t]
            dest.parent.mkdir(parents=True, exist_ok=True)
            home = os.path.relpath("index.html", extra[t].parent).replace(os.sep, "/")
            if t.suffix == ".md":
                body = rewrite(markdown2html((root / t).read_text(encoding="utf-8")), t, built)
                dest.write_text(wrap(t.as_posix(), body, home), encoding="utf-8")
            elif (root / t).is_dir():
                files = sorted(f for f in (root / t).rglob("*") if f.is_file() and "__pycache__" not in f.parts and f.stat().st_size <= MAX_COPY)
                for f in files: (dest / f.relative_to(root / t)).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, dest / f.relative_to(root / t))
                items = "".join(f'<li><a href="{html.escape(f.relative_to(root / t).as_posix())}">{html.escape(f.relative_to(root / t).as_posix())}</a></li>' for f in files)
                home = os.path.relpath("index.html", extra[t]).replace(os.sep, "/")
                (dest / "index.html").write_text(wrap(t.as_posix() + "/", f"<h1>{html.escape(t.as_posix())}/</h1><ul>{items}</ul>", home), encoding="utf-8")
            elif (root / t).stat().st_size <= MAX_COPY: shutil.copy2(root / t, dest)
            else: broken.append(f"{t}: larger than {MAX_COPY} bytes, not copied")
    return len(todo)

out.parent.mkdir(parents=True, exist_ok=True)
tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-build-"))
try:
    n = build(tmp)
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-old-")); os.replace(out, old / "docs")
        os.replace(tmp, out); shutil.rmtree(old)
    else: os.replace(tmp, out)
except BaseException:
    shutil.rmtree(tmp, ignore_errors=True); raise
for b in broken: print(f"docs: unresolved link {b}", file=sys.stderr)
if outside: print(f"docs: {len(outside)} links point at pages outside DOCS_ONLY", file=sys.stderr)
print(f"docs: {n} notebooks -> {out}/index.html" + (f" ({len(broken)} unresolved links)" if broken else ""))
strict = os.environ.get("DOCS_STRICT", "")
sys.exit(1 if broken and strict not in ("", "0") else 0)
PY
