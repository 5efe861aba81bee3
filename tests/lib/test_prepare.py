"""llmops_nb.prepare: the prepare_data job through an executor; decisions (ids, dedupe) central, so every executor gives
the same datasets, to the digest."""
import json
from dataclasses import fields
import pytest
from conftest import ROOT
from llmops_nb.core import ConfigError
from llmops_nb.data import DataError, dedupe, deprioritize, load_dataset
from llmops_nb.executors import LocalExecutor, ProcessExecutor, RayExecutor
from llmops_nb.prepare import PrepareConfig, chunk_documents, gather_documents, prepare

SAMPLE = ROOT / "data" / "sample"
POLICY = "# Returns\n\n" + " ".join(f"Unused item {i} can be returned within 30 days of delivery." for i in range(30))


def write(folder, name, text):
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


@pytest.fixture
def kb(tmp_path):
    "Copies spread over files that different workers load: the dedupe decision must still see them together."
    for i in range(6):
        write(tmp_path, f"part{i}/notes.jsonl", "".join(json.dumps({"id": f"n{j}", "text": f"Note {j % 4} about kettles and "
                                                                    f"toasters, version {j % 4}."}) + "\n" for j in range(5)))
    write(tmp_path, "a/returns.md", POLICY)
    write(tmp_path, "z/returns_copy.md", POLICY)
    write(tmp_path, "m/returns_draft.md", POLICY.replace("Unused item 3 ", "An unused item 3 "))
    write(tmp_path, "contact.txt", "Write to help@kestrel-home.com or call 555-013-4567 for a repair.")
    write(tmp_path, "broken.jsonl", '{"id": "x", "text": "ok"}\n{oops}\n')
    return tmp_path


def cfg_for(folder, **kw):
    return PrepareConfig(inputs=[str(folder)], exclude=[], sft_path="", pii_entities=["EMAIL", "PHONE"], **kw)


def test_config_keeps_the_job_parameters_and_adds_the_executor():
    names = [f.name for f in fields(PrepareConfig)]
    assert names[:13] == ["inputs", "exclude", "sft_path", "system_prompt", "pii_mode", "pii_entities", "pii_allow",
                          "dedupe_threshold", "deprioritize_ids", "max_tokens", "overlap", "val_frac", "seed"]
    c = PrepareConfig(sft_path="", workers="3")
    assert (c.executor, c.workers, c.max_tokens, c.dedupe_threshold) == ("local", 3, 200, 0.7)
    for kw, msg in [({"executor": "spark"}, "parameter 'executor'"), ({"workers": -1}, "parameter 'workers'"),
                    ({"workers": "many"}, "parameter 'workers'"), ({"inputs": []}, "parameter 'inputs'"),
                    ({"max_tokens": 4}, "parameter 'max_tokens'")]:
        with pytest.raises(ConfigError, match=msg):
            PrepareConfig(sft_path="", **kw)


def test_dedupe_is_central_across_partitions(kb):
    cfg = cfg_for(kb)
    local = gather_documents(cfg)
    pooled = gather_documents(cfg, ProcessExecutor(2))
    assert [d.id for d in pooled.kept] == [d.id for d in local.kept] and pooled.duplicates == local.duplicates
    ref_kept, ref_dups = dedupe(local.docs, prefer=deprioritize(*cfg.deprioritize_ids))  # all in one process
    assert [d.id for d in local.kept] == [d.id for d in ref_kept] and local.duplicates == ref_dups
    ids = [d.id for d in local.loaded]
    assert "part1/notes.jsonl#n0" in ids and len(ids) == len(set(ids))
    dropped = {r["id"]: r["kind"] for r in local.duplicates}
    assert dropped["z/returns_copy.md"] == "exact" and dropped["m/returns_draft.md"] == "near"
    assert sum(k == "exact" for k in dropped.values()) == 6 * 5 - 4 + 1  # 30 notes with 4 texts, and the copy
    assert [(f["file"], f["kind"]) for f in local.failures] == [("broken.jsonl", "invalid")]


def test_stage_two_in_order_and_redacted(kb):
    cfg = cfg_for(kb)
    g = gather_documents(cfg)
    found, rows = chunk_documents(cfg, g.kept, ProcessExecutor(2))
    assert (found, rows) == chunk_documents(cfg, g.kept, LocalExecutor())
    assert found == {"EMAIL": 1, "PHONE": 1}
    assert list(dict.fromkeys(r["doc_id"] for r in rows)) == [d.id for d in g.kept]  # documents in input order
    assert not any("help@kestrel" in r["text"] or "555-013" in r["text"] for r in rows)


def test_prepare_writes_the_job_outputs(kb, tmp_path_factory, home):
    out = tmp_path_factory.mktemp("job")
    report = prepare(cfg_for(kb, pii_mode="hash"), out_dir=out)
    chunks = load_dataset(out / "datasets" / "chunks")
    assert report["digests"] == {"chunks": chunks.digest} and chunks.manifest["extra"]["pii_mode"] == "hash"
    assert json.loads((out / "data_report.json").read_text()) == report
    assert report["documents"]["failed"] == 1 and report["documents"]["failures"] == {"invalid": 1}
    assert (out / "chunk_tokens.png").stat().st_size > 1000
    assert prepare(cfg_for(kb, pii_mode="hash", executor="process", workers=2), out_dir=out / "again") == report


def test_embeddings_precomputed_into_the_cache(kb, tmp_path_factory, home):
    from llmops_nb.embeddings import Embedder
    out = tmp_path_factory.mktemp("job")
    report = prepare(cfg_for(kb, embed_model="all-minilm-l6-v2"), out_dir=out, executor=ProcessExecutor(2))
    texts = [r["text"] for r in load_dataset(out / "datasets" / "chunks").rows]
    assert report["embeddings"]["computed"] == len(set(texts)) and report["embeddings"]["already_cached"] == 0
    emb = Embedder("all-minilm-l6-v2")
    vecs = emb.embed(texts)
    assert emb.encoded == 0 and vecs.shape == (len(texts), 384)              # build_index would encode nothing
    assert abs(vecs - Embedder("all-minilm-l6-v2", cache=False).encode(texts)).max() < 1e-5
    with pytest.raises(ConfigError, match="parameter 'embed_model'"):
        PrepareConfig(sft_path="", embed_model="no/such/model")


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="give a run or an out_dir"):
        prepare(cfg_for(tmp_path))
    write(tmp_path, "only/broken.jsonl", "{oops}\n")
    with pytest.raises(DataError, match="no documents in .*broken.jsonl:1"):
        gather_documents(cfg_for(tmp_path / "only"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no documents in"):
        gather_documents(cfg_for(tmp_path / "empty"))
    write(tmp_path, "blank/a.txt", "\u200b\n")
    write(tmp_path, "blank/b.txt", "Some text.")
    with pytest.warns(UserWarning, match="empty after cleaning"):
        g = gather_documents(cfg_for(tmp_path / "blank"))
    assert [d.id for d in g.kept] == ["b.txt"] and len(g.loaded) == 2
    big = "".join(json.dumps({"id": f"r{i}", "text": f"Row {i}: kettle number {i} ships in {i % 9 + 1} days."}) + "\n"
                  for i in range(5000))
    write(tmp_path, "big/rows.jsonl", big)
    g = gather_documents(cfg_for(tmp_path / "big"), ProcessExecutor(2))
    assert len(g.loaded) == 5000 and len(g.kept) + len(g.duplicates) == 5000


@pytest.mark.slow
def test_same_digests_in_process_process_pool_and_ray(tmp_path, home):
    "The sample corpus with the job's defaults (spaCy PII included): identical datasets and dedupe reports."
    cfg = PrepareConfig(inputs=[str(SAMPLE)], sft_path="")
    reports = {"local": prepare(cfg, out_dir=tmp_path / "local")}
    reports["process"] = prepare(cfg, out_dir=tmp_path / "process", executor=ProcessExecutor(2))
    with RayExecutor(2) as ray:
        reports["ray"] = prepare(cfg, out_dir=tmp_path / "ray", executor=ray)
    ref = reports["local"]
    assert ref["chunks"]["count"] > 200 and ref["duplicates"]["exact"] >= 3 and ref["duplicates"]["near"] >= 3
    for name, r in reports.items():
        assert r["digests"] == ref["digests"], name
        assert r["duplicates"] == ref["duplicates"] and r == ref, name
