"The compare_embedders runbook through `llmops run` on two tiny models, its record and W&B logs; build_index taking its winner; bad input."
import json
from pathlib import Path
import pytest
from conftest import llmops_run, run_dir_of, job_env
from llmops_nb.core import read_json
from llmops_nb.corpus import sample_chunks
from llmops_nb.embedcompare import make_tiny_embedder
from llmops_nb.runs import read_run, read_wandb_run


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return job_env(home, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "Two tiny sentence-transformers models: 4-d (the baseline, loses most words) and 64-d."
    d, texts = tmp_path_factory.mktemp("models"), [c["text"] for c in sample_chunks()[0]]
    return make_tiny_embedder(d / "narrow", texts, dim=4), make_tiny_embedder(d / "wide", texts, dim=64)


@pytest.fixture(scope="module")
def compared(env, tiny):
    out = llmops_run("compare_embedders", ("models", json.dumps([str(p) for p in tiny])), ("n_resamples", "300"), ("k", "3"), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return read_run(run_dir_of(out))


def test_comparison_is_recorded_with_a_winner(compared, tiny):
    rec = compared
    assert rec.status == "completed" and rec.params["models"] == [str(p) for p in tiny] and rec.params["k"] == 3
    c = read_json(rec.dir / "comparison.json")
    assert c["winner"] == "wide" and c["winner_ref"] == str(tiny[1]) and c["baseline"] == "narrow" and c["significant"]
    assert [m["model"] for m in c["models"]] == ["narrow", "wide"] and c["models"][1]["dim"] == 64
    assert c["models"][1]["mrr"] > c["models"][0]["mrr"] and c["n_resamples"] == 300 and c["metric"] == "mrr"
    m = rec.metrics
    assert m["mrr/wide"] == pytest.approx(c["models"][1]["mrr"]) and {"recall_at_3/narrow", "ndcg_at_3/wide",
                                                                      "encode_chunks_per_s/wide", "index_bytes/wide"} <= set(m)
    assert {"comparison", "comparison_plot"} <= set(rec.lineage["outputs"]) and (rec.dir / "comparison.png").stat().st_size > 1000
    assert {"documents", "qa"} <= set(rec.lineage["inputs"])
    wb = read_wandb_run(rec.dir)
    assert wb["state"] == "finished" and wb["summary"]["mrr/wide"] == pytest.approx(m["mrr/wide"])
    assert "comparison/table" in wb["summary"] and "comparison/plot" in wb["summary"]


def test_build_index_takes_the_winner(env, compared, tiny):
    out = llmops_run("build_index", ("embed_model", "compare_embedders:latest"), ("document_scan", "off"), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rec = read_run(run_dir_of(out))
    manifest = read_json(rec.dir / "index" / "manifest.json")
    assert manifest["embedding_ref"] == str(tiny[1]) and manifest["dim"] == 64
    choice = rec.lineage["inputs"]["embedder_choice"]
    assert choice["run_id"] == compared.id and compared.id in rec.lineage["parents"]
    assert Path(choice["path"]) == compared.dir / "comparison.json"
    out = llmops_run("build_index", ("embed_model", rec.id), env=env)           # a build_index run names no winner
    assert out.returncode == 1 and "is a build_index run, not a compare_embedders run" in out.stderr


def test_bad_parameters_fail_fast(env, tiny):
    out = llmops_run("compare_embedders", ("models", "[]"), env=env)
    assert out.returncode == 2 and "parameter 'models' must be a non-empty list" in out.stderr
    out = llmops_run("compare_embedders", ("metric", "map"), env=env)
    assert out.returncode == 2 and "'mrr' | 'ndcg' | 'recall'" in out.stderr
    out = llmops_run("compare_embedders", ("models", json.dumps([str(tiny[0]), "no-such-model-xyz"])), env=env)
    assert out.returncode == 1 and "no-such-model-xyz" in out.stderr
