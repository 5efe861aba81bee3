"Documentation: the architecture picture, the README's links and sections, `make docs`, and an example for every public function."
import importlib, importlib.util, json, os, re, subprocess, sys
from html.parser import HTMLParser
import xml.etree.ElementTree as ET
from pathlib import Path
import pytest
from llmops_nb.core import pkg_root

ROOT = pkg_root()
README = ROOT / "README.md"


def _architecture():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" / "architecture.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


# ---- the architecture picture ----

def test_architecture_svg_is_what_the_script_draws():
    committed = (ROOT / "nbs" / "images" / "architecture.svg").read_text(encoding="utf-8")
    assert committed == _architecture().svg(), "nbs/images/architecture.svg is stale: run python scripts/architecture.py"


def test_architecture_svg_is_wellformed_and_complete():
    svg = ET.fromstring((ROOT / "nbs" / "images" / "architecture.svg").read_bytes())
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("width") == "900"
    words = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    for part in ["documents", "prepare_data", "dataset digest", "build_index", "FAISS", "train_sft", "LoRA", "input", "retrieve",
                 "prompt", "model", "output guard", "grounded", "McNemar", "judge", "serve", "OpenAI-compatible", "API keys",
                 "trace store", "SQLite (WAL)", "drift", "alert", "dashboard", "run records", "lineage.json", "notebook.ipynb",
                 "W&B", "offline by default", "accelerate", "FSDP", "DeepSpeed", "faiss-gpu", "OpenAICompatGenerator", "cron",
                 "CronJob", "Slurm"]:
        assert part in words, part
    # every text sits inside the canvas
    for t in svg.iter("{http://www.w3.org/2000/svg}text"):
        assert 0 <= float(t.get("x")) <= 900 and 0 <= float(t.get("y")) <= float(svg.get("height")), t.text


def test_architecture_script_writes_and_checks(tmp_path, capsys):
    arch = _architecture()
    out = tmp_path / "pics" / "a.svg"
    assert arch.main(["--out", str(out)]) == 0 and out.read_text(encoding="utf-8") == arch.svg()
    assert arch.main(["--out", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("monitor", "monitr"))
    assert arch.main(["--out", str(out), "--check"]) == 1
    assert arch.main(["--out", str(tmp_path / "missing.svg"), "--check"]) == 1
    assert "out of step" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["a.svg"]                  # no temp file left behind
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError): arch.write(tmp_path / "afile" / "b.svg", "<svg/>")   # a file where the folder should be
    assert (tmp_path / "afile").read_text() == "x"


# ---- the README ----

def _local_links(text: str) -> list:
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'(?:href|src)="([^"]+)"', text)
    return [l.split("#")[0] for l in links if not re.match(r"[a-z]+:|#", l)]


def test_readme_links_every_notebook_and_runbook():
    linked = {os.path.normpath(l) for l in _local_links(README.read_text(encoding="utf-8"))}
    nbs = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("nbs/*.ipynb"), *ROOT.glob("runbooks/*.ipynb")])
    assert len(nbs) > 30
    assert [n for n in nbs if n not in linked] == []


def test_readme_local_links_exist():
    links = _local_links(README.read_text(encoding="utf-8"))
    assert "nbs/images/architecture.svg" in links
    assert [l for l in links if not (ROOT / l).exists()] == []


def test_readme_sections_in_order():
    text = README.read_text(encoding="utf-8")
    heads = re.findall(r"^## (.+)$", text, re.M)
    want = ["The two commands", "How it fits together", "A five-minute tour", "The quickstart lifecycle",
            "Notebooks and runbooks", "Scale-out", "Documentation"]
    assert [h for h in heads if h in want] == want
    for s in ["make quickstart", "make test", "![", "llmops lineage TRACE_ID", "runs/quickstart/<id>/lifecycle.html",
              "OpenAICompatGenerator", "configs/accelerate", "environment.yml", "deploy/", "make docs"]:
        assert s in text, s
    life = text.split("## The quickstart lifecycle")[1].split("\n## ")[0]
    order = ["doctor", "prepare_data", "build_index", "train_sft", "evaluate the base model", "evaluate the fine-tuned model",
             "release", "traffic", "monitor", "retrain", "traffic after"]
    pos = [life.index(f"**{w}**") for w in order]
    assert pos == sorted(pos)


def test_readme_is_generated_from_the_index():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_readme.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- make docs ----

def _docs(out: Path, only: str, strict: bool = True):
    env = {**os.environ, "DOCS_ONLY": only, "DOCS_OUT": str(out), "DOCS_STRICT": "1" if strict else "0"}
    return subprocess.run(["bash", str(ROOT / "scripts" / "make_docs.sh")], env=env, capture_output=True, text=True, timeout=120)


class _Links(HTMLParser):
    "href/src attributes of real tags (not text that looks like them, e.g. HTML inside a code cell)."
    def __init__(self, doc: str):
        super().__init__(); self.found = []; self.feed(doc)
    def handle_starttag(self, tag, attrs): self.found += [(tag, v) for k, v in attrs if k in ("href", "src") and v is not None]


def _pages() -> set:
    "Every page a full build makes, relative to the docs folder."
    return {p.stem + ".html" for p in ROOT.glob("nbs/*.ipynb")} | {f"runbooks/{p.stem}.html" for p in ROOT.glob("runbooks/*.ipynb")}


def test_make_docs_subset_offline_with_working_links(tmp_path):
    out = tmp_path / "docs"
    r = _docs(out, "index 00_core runbooks/doctor")
    assert r.returncode == 0, r.stderr
    for page in ["index.html", "00_core.html", "runbooks/doctor.html", "images/architecture.svg"]:
        assert (out / page).is_file(), page
    pages = _pages()
    checked = 0
    for f in out.rglob("*.html"):
        doc = f.read_text(encoding="utf-8")
        for tag, url in _Links(doc).found:
            # nothing has to be fetched to read a page: no external scripts, stylesheets or images
            assert tag == "a" or not re.match(r"(https?:)?//", url), f"{f.name}: <{tag}> loads {url}"
            if re.match(r"[a-z]+:|#|$", url): continue
            target = (f.parent / url.split("#")[0]).resolve()
            rel = target.relative_to(out.resolve()).as_posix()
            assert not url.endswith(".ipynb"), f"{f.name}: {url} still points at a notebook"
            assert target.exists() or rel in pages, f"{f.relative_to(out)}: {url} resolves nowhere"
            checked += 1
    assert checked > 40
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="00_core.html"' in index and 'href="runbooks/doctor.html"' in index and 'src="images/architecture.svg"' in index
    assert 'href="index.html"' in (out / "00_core.html").read_text() and 'href="../index.html"' in (out / "runbooks" / "doctor.html").read_text()

    # a second build replaces the first whole; a failed build leaves it in place
    (out / "stale.html").write_text("old")
    assert _docs(out, "00_core").returncode == 0
    assert (out / "00_core.html").is_file() and not (out / "stale.html").exists() and not (out / "index.html").exists()
    bad = _docs(out, "00_core no_such_notebook")
    assert bad.returncode != 0 and "no_such_notebook" in bad.stderr
    assert (out / "00_core.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]          # no temporary build folders left


# ---- every public function is shown in its notebook ----

def _notebook_modules() -> list:
    found = []
    for nb in sorted(ROOT.glob("nbs/*.ipynb")):
        src = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text(encoding="utf-8"))["cells"])
        m = re.search(r"#\|\s*default_exp\s+(\S+)", src)
        if m: found.append((nb.name, m.group(1)))
    return found


@pytest.mark.parametrize("notebook,module", _notebook_modules())
def test_every_public_function_has_an_example(notebook, module):
    cells = json.loads((ROOT / "nbs" / notebook).read_text(encoding="utf-8"))["cells"]
    shown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"
                      and not re.search(r"#\|\s*(export|exports|exporti)\b", "".join(c["source"])))
    mod = importlib.import_module(f"llmops_nb.{module}")
    public = [n for n in getattr(mod, "__all__", []) if callable(getattr(mod, n)) and not isinstance(getattr(mod, n), type)]
    missing = [n for n in public if not re.search(rf"\b{re.escape(n)}\b", shown)]
    assert missing == [], f"{notebook}: no example of {missing} outside the exported cells"
