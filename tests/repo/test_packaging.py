"Packaging facts: environment.yml matches pyproject.toml, the two commands, CI and the nbdev 3 settings."
import re, tomllib
import yaml
from conftest import ROOT

SUBSTITUTIONS = {"faiss-cpu": "faiss-gpu-cu12"}   # the one documented difference on GPU machines


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _specs(reqs) -> dict:
    return {_name(r): r.strip()[len(_name(r)):].strip() for r in reqs}


def test_environment_yml_lists_the_same_dependencies():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = _specs(proj["dependencies"] + proj["optional-dependencies"]["dev"] + proj["optional-dependencies"]["gpu"])
    want = {SUBSTITUTIONS.get(k, k): v for k, v in want.items()}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    have = _specs(pip)
    assert set(have) == set(want), f"only in environment.yml: {set(have) - set(want)}; only in pyproject: {set(want) - set(have)}"
    for k, v in want.items():
        if k not in SUBSTITUTIONS.values():
            assert have[k] == v, f"{k}: environment.yml has {have[k]!r}, pyproject.toml has {v!r}"


def test_nbdev3_settings_and_entry_point():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    nb = cfg["tool"]["nbdev"]
    assert nb["tst_flags"] == "slow gpu" and nb["allowed_cell_metadata_keys"] == ["tags"]
    assert cfg["project"]["scripts"]["llmops"] == "llmops_nb.cli:main"
    assert not (ROOT / "settings.ini").exists() and not (ROOT / "setup.py").exists()


def test_readme_two_commands_and_ci():
    readme = (ROOT / "README.md").read_text()
    assert "make quickstart" in readme and "make test" in readme
    assert "settings.ini" in readme                 # the layout section tells nbdev 2 users where it went
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_wheel_ships_the_guard_classifiers(tmp_path):
    "A built wheel carries the trained guard weights and their metadata (package data, not only the checkout)."
    import subprocess, sys, zipfile
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    names = zipfile.ZipFile(next(tmp_path.glob("llmops_nb-*.whl"))).namelist()
    for guard in ("injection", "toxicity"):
        assert f"llmops_nb/assets/guards/{guard}/weights.safetensors" in names
        assert f"llmops_nb/assets/guards/{guard}/meta.json" in names
