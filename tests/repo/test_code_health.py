"scripts/code_health.py finds what it says it finds (make lint runs it over the library)."
import importlib.util, json
from pathlib import Path
import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("code_health", ROOT / "scripts" / "code_health.py")
ch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ch)


def test_long_lines_and_functions(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    p = tmp_path / "m.py"
    p.write_text(f"def big():\n{body}\n\ndef small():\n    return 1\n# {'y' * 130}\n")
    assert ch.long_functions(p) == ["m.py:1: function big is 62 lines"]
    assert ch.long_lines(p) == ["m.py:66: line of 132 characters"]
    p.write_text("def ok():\n    return 1\n")
    assert ch.long_functions(p) == [] and ch.long_lines(p) == []


def test_semicolons_outside_strings(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("a = 1; b = 2\ns = 'x; y'\n")
    assert ch.semicolons(p) == ["m.py:1: statements joined with ';'"]


def test_private_imports(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("from .core import _hidden, shown\nfrom llmops_nb.runs import _now\nfrom .m import _own\n")
    assert ch.private_imports("m", p) == ["m.py: imports private _hidden from core", "m.py: imports private _now from runs"]


def test_cycles():
    assert ch.cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert ch.cycles({"a": ["b"], "b": []}) == []


def test_output_share(tmp_path):
    def cell(src, outputs=()):
        return {"cell_type": "code", "source": src, "outputs": list(outputs), "metadata": {}}
    out = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    nb = {"cells": [cell("#| default_exp m"), cell("#| export\ndef f(): pass"), cell("f()", out), cell("g()"),
                    cell("#| hide\ntest()"), cell("#| eval: false\nnope()"),
                    cell("#| slow\nbig()"), {"cell_type": "markdown", "source": "# t", "metadata": {}}]}
    p = tmp_path / "n.ipynb"
    p.write_text(json.dumps(nb))
    assert ch.output_share(p) == (1, 2)


def test_the_library_is_scanned():
    "Every generated module is checked, and every module with a notebook is found."
    mods = ch.modules()
    assert {"core", "cli", "serve"} <= set(mods) and "_modidx" not in mods
    assert set(ch.notebook_of()) >= set(mods)


def test_generated_lines_are_not_long_lines(tmp_path):
    "The module docstring and the first line of `__all__` are nbdev's; a long line anywhere else is found."
    p = tmp_path / "m.py"
    p.write_text(f'"""{"d" * 130}"""\n__all__ = [{"x" * 130}]\nx = 1\n"""{"y" * 130}"""\n')
    assert ch.long_lines(p) == ["m.py:4: line of 136 characters"]


def test_every_module_has_a_layer():
    "A module missing from the layers contract would go unchecked by lint-imports."
    import tomllib
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in cfg if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in layer.replace("|", ":").split(":")}
    assert named == set(ch.modules()), named ^ set(ch.modules())
