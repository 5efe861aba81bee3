import os, sys
from pathlib import Path
from typing import Optional
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
LLMOPS = str(Path(sys.executable).parent / "llmops")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch
    torch.set_num_threads(1)


@pytest.fixture
def home(tmp_path, monkeypatch):
    "A fresh project home: runs and caches land in tmp_path, runbooks come from the checkout."
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var in ("LLMOPS_RUN_DIR", "LLMOPS_PROFILE", "LLMOPS_RUNBOOKS_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def make_runbook(path: Path, params_src: str, body: str, title: str = "Test runbook") -> Path:
    "Write a minimal runbook notebook (imports, tagged parameters cell, body)."
    import json
    cells = [{"cell_type": "markdown", "id": "c0", "metadata": {}, "source": f"# {title}\n> {title}."},
             {"cell_type": "code", "id": "c1", "metadata": {}, "source": "from typing import Literal", "outputs": [], "execution_count": None},
             {"cell_type": "code", "id": "c2", "metadata": {"tags": ["parameters"]}, "source": params_src, "outputs": [], "execution_count": None},
             {"cell_type": "code", "id": "c3", "metadata": {}, "source": body, "outputs": [], "execution_count": None}]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def job_env(home: Path, cache: Optional[Path] = None, **more) -> dict:
    "The environment of a job run in a test: this process's, less LLMOPS_*/WANDB_*, with its own home and W&B offline."
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "WANDB_"))}
    extra = {"LLMOPS_CACHE_DIR": str(cache)} if cache is not None else {}
    return {**keep, "LLMOPS_HOME": str(home), **extra, "WANDB_MODE": "offline", **more}


def llmops_run(name: str, *params, env=None, timeout=900):
    "Run `llmops run NAME -p KEY VALUE ...` as a subprocess; returns the CompletedProcess."
    import subprocess
    args = [LLMOPS, "run", name]
    for k, v in params:
        args += ["-p", k, v]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


def run_dir_of(out) -> Path:
    "The run folder that `llmops run` printed on success."
    return Path(out.stdout.split(": ", 1)[1].splitlines()[0])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    "A tiny Llama + tokenizer folder (about 1M parameters), built once per test session."
    from llmops_nb.models import make_tiny_model
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
