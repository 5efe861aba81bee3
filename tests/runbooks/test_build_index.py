"The build_index runbook through `llmops run`: index, lineage to the dataset digest, metrics in the record and W&B, reuse of a dataset, bad input."
import json, os
import pytest
from conftest import llmops_run, run_dir_of, job_env
from llmops_nb.core import read_json
from llmops_nb.data import load_dataset
from llmops_nb.retrieval import VectorStore
from llmops_nb.runs import read_run, read_wandb_run


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    "A fresh project home; the embedding cache is shared by this module's runs, so only the first one embeds."
    home = tmp_path_factory.mktemp("home")
    return job_env(home, tmp_path_factory.mktemp("cache"))


def build(env, *params, timeout=600):
    return llmops_run("build_index", *params, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def first(env):
    "No prepare_data run in this home: the runbook chunks data/sample itself."
    out = build(env)
    assert out.returncode == 0, out.stderr[-3000:]
    return read_run(run_dir_of(out))


def test_build_from_sample_writes_index_metrics_and_lineage(first):
    rec = first
    assert rec.status == "completed"
    outs = rec.lineage["outputs"]
    assert {"chunks", "index", "retrieval_eval"} <= set(outs)
    chunks = load_dataset(rec.dir / outs["chunks"]["path"])
    manifest = read_json(rec.dir / "index" / "manifest.json")
    assert manifest["dataset_digest"] == chunks.digest and manifest["count"] == len(chunks) == rec.metrics["chunks"]
    assert manifest["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2" and manifest["dim"] == 384
    assert manifest["index"]["kind"] == "flat" and manifest["extra"]["run_id"] == rec.id
    scan = manifest["extra"]["document_scan"]                        # the sample documents are clean: nothing flagged
    assert scan["mode"] == "flag" and scan["blocked"] == scan["quarantined"] == 0 and scan["blocked_ids"] == []
    assert read_json(rec.dir / "document_scan.json")["mode"] == "flag" and rec.params["document_scan"] == "flag"
    assert rec.metrics["document_scan_blocked"] == 0
    assert "documents" in rec.lineage["inputs"] and "qa" in rec.lineage["inputs"]
    m = rec.metrics
    assert m["build_s"] > 0 and m["index_bytes"] > 100_000 and 0 < m["texts_embedded"] <= len(chunks)
    assert m["recall_at_5"] > 0.7 and m["hit_rate_at_5"] > 0.85 and m["skipped_unanswerable"] > 0 and m["queries"] > 50
    assert {"dense/recall_at_5", "bm25/recall_at_5", "hybrid/recall_at_5"} <= set(m)
    ev = json.loads((rec.dir / "retrieval_eval.json").read_text())
    assert set(ev["results"]) == {"dense", "bm25", "hybrid"} and ev["aliases"]
    assert len((rec.dir / "retrieval_per_query.jsonl").read_text().splitlines()) == m["queries"]
    wb = read_wandb_run(rec.dir)
    assert wb["state"] == "finished" and wb["summary"]["recall_at_5"] == pytest.approx(m["recall_at_5"])
    store = VectorStore.load(rec.dir / "index")
    assert store.search("How long is the warranty?", k=3, where={"type": "markdown"})[0].metadata["doc_id"] == "policies/warranty.md"


def test_hnsw_on_an_earlier_runs_dataset_reuses_cached_embeddings(env, first):
    out = build(env, ("dataset", first.id), ("index_kind", "hnsw"), ("ef_search", "32"), ("mode", "hybrid"), ("k", "3"))
    assert out.returncode == 0, out.stderr[-3000:]
    rec = read_run(run_dir_of(out))
    assert rec.params["index_kind"] == "hnsw" and first.id in rec.lineage["parents"]
    assert rec.lineage["inputs"]["chunks"]["digest"] == first.lineage["outputs"]["chunks"]["digest"]     # the same dataset folder
    assert read_json(rec.dir / "index" / "manifest.json")["dataset_digest"] == load_dataset(first.dir / "datasets" / "chunks").digest
    assert rec.metrics["texts_embedded"] == 0                       # every chunk came from the embedding cache
    assert rec.metrics["relevant_not_indexed"] == 0                  # duplicates map to the kept copy (the earlier run's dedupe report)
    assert rec.metrics["recall_at_3"] == pytest.approx(rec.metrics["hybrid/recall_at_3"]) and "chunks" not in rec.lineage["outputs"]


def test_bad_parameters_fail_fast_with_clear_errors(env, tmp_path):
    out = build(env, ("index_kind", "annoy"))
    assert out.returncode == 2 and "'flat' | 'ivf' | 'hnsw'" in out.stderr
    out = build(env, ("dataset", str(tmp_path / "missing")))
    assert out.returncode == 1 and "not a dataset folder, a run folder or a run id" in out.stderr
    out = build(env, ("document_scan", "drop"))
    assert out.returncode == 2 and "'off' | 'flag' | 'quarantine'" in out.stderr
    out = build(env, ("k", "0"))                                    # IndexConfig's range check, before any work
    assert out.returncode == 2 and "parameter 'k' must be >= 1, got 0" in out.stderr


SCANNER = """
import llmops_nb.guard as _g
from types import SimpleNamespace as _NS
def scan_document(text, policy=None):   # a stand-in for the guard's document scan: blocks the warranty chunks
    bad = "warranty" in text.lower()
    return _NS(action="block" if bad else "allow", blocked=bad, findings=[_NS(guard="document", reason="test rule")] if bad else [])
_g.scan_document = scan_document
"""


def test_document_scan_quarantines_and_flags_blocked_chunks(env, first, tmp_path):
    "A scanner that blocks warranty chunks: quarantine leaves them out of the index, flag keeps and lists them; both are recorded."
    (tmp_path / "sitecustomize.py").write_text(SCANNER)               # loaded by every Python process of the run, the kernel included
    e = {**env, "PYTHONPATH": str(tmp_path) + os.pathsep + env.get("PYTHONPATH", "")}
    out = build(e, ("dataset", first.id), ("document_scan", "quarantine"))
    assert out.returncode == 0, out.stderr[-3000:]
    rec = read_run(run_dir_of(out))
    rep = read_json(rec.dir / "document_scan.json")
    chunks = load_dataset(first.dir / "datasets" / "chunks")
    warranty = [r["id"] for r in chunks.rows if "warranty" in r["text"].lower()]
    assert warranty and rep["blocked_ids"] == warranty and rep["quarantined"] == len(warranty)
    assert rep["examples"][0]["reasons"] == ["document: test rule"] and len(rep["examples"]) <= 5
    manifest = read_json(rec.dir / "index" / "manifest.json")
    assert manifest["count"] == len(chunks) - len(warranty) and manifest["extra"]["document_scan"]["quarantined"] == len(warranty)
    assert "examples" not in manifest["extra"]["document_scan"]
    assert not set(warranty) & {h.id for h in VectorStore.load(rec.dir / "index").search("warranty", k=20)}
    assert rec.metrics["document_scan_quarantined"] == len(warranty)
    out = build(e, ("dataset", first.id), ("document_scan", "flag"))
    rec = read_run(run_dir_of(out))
    manifest = read_json(rec.dir / "index" / "manifest.json")
    assert manifest["count"] == len(chunks) and manifest["extra"]["document_scan"]["blocked_ids"] == warranty
