"Retrieval: embedder cache, VectorStore (ids, filters before ranking, BM25, hybrid, re-rank), persistence, evaluate_retrieval, bad input (the metrics against trec_eval: nbs/04b_ir_metrics.ipynb)."
import pickle, random, re, shutil, time
from pathlib import Path
import numpy as np
import pytest
from llmops_nb.core import digest, load_settings, packaged_model_path, read_json, write_json
from llmops_nb.corpus import sample_chunks
from llmops_nb.embeddings import Embedder
from llmops_nb.ir_metrics import evaluate_retrieval
from llmops_nb.retrieval import FilterError, Hit, RetrievalError, VectorStore, rrf

CATS = ["returns", "warranty", "shipping", "loyalty", "repairs"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    "Settings whose embedding cache is shared by this module's tests (each text is embedded once)."
    return load_settings(home=tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def corpus():
    "About a hundred sample chunks: five policies, the FAQ rows and a few product pages."
    rows, report = sample_chunks()
    keep = ("policies/returns.md", "policies/refunds.md", "policies/warranty.md", "policies/shipping.md", "faq/faq.jsonl", "products/html/k")
    return [r for r in rows if r["doc_id"].startswith(keep)], report


@pytest.fixture(scope="module")
def store(settings, corpus):
    s = VectorStore(Embedder(settings=settings))
    s.add_chunks(corpus[0])
    return s


@pytest.fixture(scope="module")
def vecs(store):
    return store.index.reconstruct_batch(np.arange(len(store), dtype=np.int64))


def synthetic(store, vecs, kind, **kw):
    "The corpus vectors with synthetic metadata (category, price, flag) in a store of `kind`."
    rng = random.Random(1)
    metas = [{"category": rng.choice(CATS), "price": rng.choice([5, 9.5, 20, 35, 49.99, 80, 120]), "flag": rng.random() < 0.3,
              "doc": f"d{i % 17}"} for i in range(len(vecs))]
    s = VectorStore(store.embedder, index=kind, **kw)
    s.add([f"c{i}" for i in range(len(vecs))], [f"text {i}" for i in range(len(vecs))], metas, embeddings=vecs)
    return s, metas


def test_default_store_public_shape(home):
    s = VectorStore()
    s.add(ids=["a", "b", "c"], texts=["The kettle boils water.", "Refunds take five days.", "Stores open at nine."],
          metadatas=[{"t": "product"}, {"t": "policy"}, {"t": "stores"}])
    hits = s.search("how long until I get my money back", k=2)
    assert len(hits) == 2 and hits[0].id == "b" and hits[0].score >= hits[1].score
    assert isinstance(hits[0], Hit) and hits[0].text == "Refunds take five days." and hits[0].metadata == {"t": "policy"}
    assert s.kind == "flat" and s.embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2" and s.dim == 384
    assert (home / ".cache" / "llmops" / "embeddings").is_dir()      # the cache lives under the settings' cache_dir


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_filtered_search_is_complete_and_matches_brute_force(store, vecs, kind):
    s, metas = synthetic(store, vecs, kind, nprobe=1, ef_search=4, exact_below=8)   # approximate kinds made to fall short
    rng = random.Random(7)
    wheres = [{"category": "returns"}, {"category": ["loyalty", "repairs"]}, {"price": {"gte": 20, "lt": 50}}, {"flag": True},
              {"category": "warranty", "price": {"lte": 9.5}}, {"doc": "d3"}, {"doc": ["d1", "d2"], "flag": False},
              {"price": {"gt": 1000}}, {"category": {"nin": ["returns", "warranty"]}}]
    def ok(m, w):
        for f, c in w.items():
            x, c = m[f], c if isinstance(c, dict) else {"in": c} if isinstance(c, list) else {"eq": c}
            tests = {"eq": lambda v: x == v, "in": lambda v: x in v, "nin": lambda v: x not in v, "gt": lambda v: x > v,
                     "gte": lambda v: x >= v, "lt": lambda v: x < v, "lte": lambda v: x <= v}
            if not all(tests[op](v) for op, v in c.items()): return False
        return True
    for w in wheres:
        match = np.array([i for i, m in enumerate(metas) if ok(m, w)], dtype=int)
        assert sorted(s.ids(w)) == sorted(f"c{i}" for i in match)
        for k in (1, 5, 10, 50):
            q = vecs[rng.randrange(len(vecs))]
            hits = s.search(q, k=k, where=w)
            assert len(hits) == min(k, len(match)), (kind, w, k)
            assert all(ok(h.metadata, w) for h in hits)
            if kind == "flat" and len(match):
                brute = np.sort(vecs[match] @ q)[::-1][:k]
                np.testing.assert_allclose([h.score for h in hits], brute, atol=1e-5)


def test_post_filtering_would_come_up_short(store, vecs):
    "The over-fetch-then-filter baseline misses matches that pre-filtering returns."
    s, metas = synthetic(store, vecs, "flat")
    q, k = vecs[0], 10
    where = {"doc": "d5"}
    D, I = s.index.search(q[None], 2 * k)
    post = [l for l in I[0] if l >= 0 and metas[l]["doc"] == "d5"][:k]
    assert len(post) < min(k, sum(m["doc"] == "d5" for m in metas)) == len(s.search(q, k=k, where=where))


def test_upsert_delete_keep_dense_bm25_and_filters_consistent(store, vecs):
    for kind in ("flat", "ivf", "hnsw"):
        s = VectorStore(store.embedder, index=kind)
        s.add(store.ids(), [store.get(i).text for i in store.ids()], [store.get(i).metadata for i in store.ids()], embeddings=vecs)
        n, victim = len(s), store.ids()[3]
        r = s.upsert([victim, "new::c0"], ["Refunds are paid in Zorblax coins.", "The Quuxifier toaster sings."],
                     [{**s.get(victim).metadata, "type": "memo"}, {"doc_id": "new", "type": "memo"}])
        assert r == {"added": 1, "replaced": 1, "unchanged": 0} and len(s) == n + 1
        assert s.get(victim).text == "Refunds are paid in Zorblax coins."
        assert s.search("Zorblax", k=1, mode="bm25")[0].id == victim
        assert {h.id for h in s.search("refund", k=5, where={"type": "memo"})} == {victim, "new::c0"}
        assert s.delete(["new::c0", victim]) == 2 and len(s) == n - 1
        assert s.search("Zorblax Quuxifier", k=3, mode="bm25") == []
        assert s.ids({"type": "memo"}) == [] and victim not in s
        assert all(h.id != victim for h in s.search(vecs[3], k=len(s), where=None))
        assert len(s.search(vecs[3], k=1000)) == n - 1
        with pytest.raises(KeyError, match="not in the store"): s.delete(["nope"])
        assert s.delete(["nope"], missing_ok=True) == 0
        s.compact()
        assert s.index.ntotal == len(s) == n - 1 and len(s.search(vecs[5], k=3, where={"type": "markdown"})) == 3


def test_many_deletes_compact_automatically(store, vecs):
    s = VectorStore(store.embedder, index="hnsw")
    s.add([f"x{i}" for i in range(1500)], ["t"] * 1500, embeddings=np.tile(vecs[:1], (1500, 1)))
    s.delete([f"x{i}" for i in range(1400)])
    assert (len(s), len(s._ids), s.index.ntotal) == (100, 100, 100)


def test_reindexing_unchanged_chunks_calls_the_model_zero_times(settings, corpus, store, monkeypatch):
    def boom(self, texts): raise AssertionError(f"the model was called for {len(texts)} texts")
    monkeypatch.setattr(Embedder, "encode", boom)
    again = VectorStore(Embedder(settings=settings))
    assert again.add_chunks(corpus[0]) == {"added": len(corpus[0]), "replaced": 0, "unchanged": 0}
    assert again.add_chunks(corpus[0]) == {"added": 0, "replaced": 0, "unchanged": len(corpus[0])}
    assert again.content_digest() == store.content_digest()


def test_embedder_batches_normalizes_and_caches_by_content(settings, tmp_path, tiny_model):
    e = Embedder(settings=settings, cache=tmp_path / "c", batch_size=2)
    texts = ["alpha beta", "gamma delta", "alpha beta", "epsilon"]
    v = e.embed(texts)
    assert v.shape == (4, 384) and v.dtype == np.float32 and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert (e.calls, e.encoded) == (1, 3)                  # the repeated text is encoded once
    assert np.allclose(v[0], v[2])
    raw, unit = (Embedder(tiny_model, settings=settings, cache=False, normalize=n).embed(texts) for n in (False, True))
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1) and np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)
    assert Embedder(settings=settings, cache=tmp_path / "c", normalize=False).key("x") != e.key("x")   # the flag is in the key
    assert not list((tmp_path / "c").rglob("*.pkl")) and list((tmp_path / "c").rglob("*.npy"))
    t = time.time()
    with pytest.raises(Exception, match="hub is offline"): Embedder("nobody/nothing", settings=settings)
    assert time.time() - t < 5


def test_hybrid_bm25_and_rerank(store):
    q = "How many days do I have to return a product?"
    for mode in ("dense", "bm25", "hybrid"):
        hits = store.search(q, k=4, mode=mode)
        assert 1 <= len(hits) <= 4 and all(isinstance(h, Hit) for h in hits)
    assert len(store.search("zzqx nonexistentterm", k=4, mode="hybrid")) == 4
    assert store.search("zzqx nonexistentterm", k=4, mode="bm25") == []
    seen = {}
    def rerank(query, hits):
        seen["n"] = len(hits); return sorted(hits, key=lambda h: h.id)
    out = store.search(q, k=3, mode="hybrid", rerank=rerank)
    assert seen["n"] > 3 and [h.id for h in out] == sorted(h.id for h in out)
    assert [k for k, _ in rrf([[("a", 9), ("b", 8)], [("b", 1), ("c", 0.5)]])] == ["b", "a", "c"]


def test_bad_input_gives_clear_errors(store):
    for kw, err, msg in [(dict(query=""), ValueError, "query is empty"), (dict(query="   "), ValueError, "query is empty"),
                         (dict(query=42), TypeError, "query must be a str"),
                         (dict(query="x", k=0), ValueError, "k must be a positive int"), (dict(query="x", k=-1), ValueError, "k must be a positive int"),
                         (dict(query="x", k="5"), ValueError, "k must be a positive int"),
                         (dict(query="x", mode="fuzzy"), ValueError, "mode must be one of dense, bm25, hybrid"),
                         (dict(query=np.zeros(16, np.float32)), RetrievalError, "dimension mismatch"),
                         (dict(query="x", where={"colour": "red"}), FilterError, "unknown metadata field 'colour' in where; known fields: "),
                         (dict(query="x", where={"type": 3}), FilterError, "3 is a number, but field 'type' holds str values"),
                         (dict(query="x", where={"n_tokens": {"gte": "ten"}}), FilterError, "a range bound must be a number"),
                         (dict(query="x", where={"type": {"gte": 1}}), FilterError, "range filters need a numeric field"),
                         (dict(query="x", where={"type": {"regex": "m.*"}}), FilterError, "unknown operator 'regex'"),
                         (dict(query="x", where={"type": {"in": "markdown"}}), FilterError, "expected a list of values"),
                         (dict(query="x", where={"type": [{"a": 1}]}), FilterError, "values must be str, int, float, bool or None"),
                         (dict(query="x", where="type=markdown"), FilterError, "where must be a dict"),
                         (dict(query="x", rerank=lambda q, h: None), TypeError, "rerank must return a list of Hit")]:
        with pytest.raises(err, match=re.escape(msg)):
            store.search(**kw)
    with pytest.raises(RetrievalError, match="dimension mismatch: embeddings have 8 dimensions"):
        store.add(["z"], ["x"], embeddings=np.zeros((1, 8)))
    with pytest.raises(ValueError, match="already in the store"): store.add([store.ids()[0]], ["x"])
    with pytest.raises(TypeError, match="join a list into a string"): store.add(["z"], ["x"], [{"tags": ["a"]}])
    with pytest.raises(RetrievalError, match="IVF with nlist=64 trains on the first batch"):
        VectorStore(store.embedder, index="ivf", nlist=64).add(["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="index must be one of flat, ivf, hnsw"): VectorStore(store.embedder, index="annoy")


def test_save_load_round_trip_without_pickle(store, tmp_path, monkeypatch):
    q = "Is the Pro line warranty longer?"
    for kind in ("flat", "ivf", "hnsw"):
        s = VectorStore(store.embedder, index=kind)
        s.add(store.ids(), [store.get(i).text for i in store.ids()], [store.get(i).metadata for i in store.ids()],
              embeddings=store.index.reconstruct_batch(np.arange(len(store), dtype=np.int64)))
        s.delete(store.ids()[:2])
        folder = s.save(tmp_path / kind, dataset_digest="f" * 64)
        assert sorted(p.name for p in folder.iterdir()) == ["chunks.parquet", "index.faiss", "manifest.json"]
        def no_pickle(*a, **k): raise AssertionError("pickle used while loading")
        with monkeypatch.context() as m:
            m.setattr(pickle, "load", no_pickle); m.setattr(pickle, "loads", no_pickle)
            back = VectorStore.load(folder, embedder=store.embedder)
        man = back.manifest
        assert (man["embedding_model"], man["dim"], man["count"], man["dataset_digest"], man["index"]["kind"]) == \
               (store.embedder.model_id, 384, len(store) - 2, "f" * 64, kind)
        assert back.content_digest() == s.content_digest() == man["content_digest"]
        for mode in ("dense", "bm25", "hybrid"):
            for where in (None, {"type": "markdown"}):
                assert [h.id for h in back.search(q, k=5, mode=mode, where=where)] == [h.id for h in s.search(q, k=5, mode=mode, where=where)]
        back.add(["after-load"], ["A chunk added after loading."])       # labels continue after the saved ones
        assert back.search("A chunk added after loading.", k=1)[0].id == "after-load"
    assert len(VectorStore.load(tmp_path / "flat")) == len(store) - 2    # the stored model is used when none is given


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    "A 32-dimension sentence-transformers model built offline: another embedding model for mismatch tests."
    from transformers import AutoTokenizer, BertConfig, BertModel
    from sentence_transformers import SentenceTransformer, models
    d = tmp_path_factory.mktemp("tiny")
    tok = AutoTokenizer.from_pretrained(str(packaged_model_path("all-minilm-l6-v2")))
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(d / "hf")
    tok.save_pretrained(d / "hf")
    SentenceTransformer(modules=[models.Transformer(str(d / "hf")), models.Pooling(32)]).save(str(d / "st"))
    return d / "st"


def test_missing_corrupt_and_mismatched_index_folders(store, settings, tmp_path, tiny_model):
    folder = store.save(tmp_path / "ok")
    with pytest.raises(FileNotFoundError, match="no such index folder"): VectorStore.load(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="not a vector store folder"): VectorStore.load(tmp_path)
    def broken(name, damage):
        d = tmp_path / f"bad-{name}"; shutil.copytree(folder, d); damage(d); return d
    cases = [(lambda d: (d / "index.faiss").write_bytes((d / "index.faiss").read_bytes()[:500]), "index.faiss: content does not match its sha256"),
             (lambda d: (d / "chunks.parquet").write_bytes(b"PAR1 not really"), "chunks.parquet: content does not match"),
             (lambda d: (d / "chunks.parquet").unlink(), "chunks.parquet: missing"),
             (lambda d: (d / "manifest.json").write_text("{"), "corrupt index folder"),
             (lambda d: (d / "manifest.json").write_text('{"format": "something-else"}'), "not a vector store manifest")]
    for i, (damage, msg) in enumerate(cases):
        with pytest.raises(RetrievalError, match=msg): VectorStore.load(broken(str(i), damage), embedder=store.embedder)
    def forged(d):          # garbage whose digest was rewritten too: FAISS's own reader reports it, cleanly
        (d / "index.faiss").write_bytes(b"garbage" * 50)
        m = read_json(d / "manifest.json"); m["files"]["index.faiss"] = digest(d / "index.faiss"); write_json(d / "manifest.json", m)
    with pytest.raises(RetrievalError, match="FAISS cannot read it"): VectorStore.load(broken("forged", forged), embedder=store.embedder)
    other = Embedder(tiny_model, settings=settings)
    assert other.dim == 32 and other.model_id == str(Path(tiny_model).resolve())
    with pytest.raises(RetrievalError, match="was built with embedding model 'sentence-transformers/all-MiniLM-L6-v2'.*Load without embedder="):
        VectorStore.load(folder, embedder=other)
    small = VectorStore(other); small.add(["a"], ["tiny"])
    with pytest.raises(RetrievalError, match="dimension mismatch: embeddings have 384 dimensions"):
        small.add(["b"], ["x"], embeddings=np.zeros((1, 384)))
    with pytest.raises(RetrievalError, match="dimension mismatch"): small.search(np.zeros(384, np.float32))


def test_evaluate_retrieval_document_level(store, corpus):
    rows = [{"id": "r1", "question": "How many days do I have to return a product?", "doc_ids": ["policies/returns.md", "policies/returns_copy.md"], "answerable": True},
            {"id": "r2", "question": "How long is the warranty?", "doc_ids": ["policies/warranty.md"], "answerable": True},
            {"id": "u1", "question": "What is the CEO's favourite colour?", "doc_ids": [], "answerable": False}]
    aliases = {r["id"]: r["duplicate_of"] for r in corpus[1]}
    m, per_q = evaluate_retrieval(store, rows, k=5, aliases=aliases, per_query=True)
    assert (m["queries"], m["skipped_unanswerable"], m["relevant_not_indexed"]) == (2, 1, 0)
    assert m["hit_rate_at_5"] == 1.0 and m["recall_at_5"] == 1.0 and 0 < m["precision_at_5"] <= 1
    assert all(len(r["retrieved"]) == len(set(r["retrieved"])) for r in per_q)
    m2 = evaluate_retrieval(store, rows, k=5)                       # without aliases the dropped copy is reported
    assert m2["relevant_not_indexed"] == 1
    with pytest.raises(ValueError, match="needs a non-empty 'question'"): evaluate_retrieval(store, [{"question": " "}])
    with pytest.raises(ValueError, match="nothing to evaluate"): evaluate_retrieval(store, rows[2:])


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_tenants_are_pre_filtered_and_still_get_k_results(store, vecs, kind):
    n = len(vecs)
    owner = ["acme" if i % 3 == 0 else "globex" if i % 3 == 1 else None for i in range(n)]
    s = VectorStore(store.embedder, index=kind, ef_search=4, exact_below=8)
    s.add([f"c{i}" for i in range(n)], [store._texts[i] for i in range(n)], [{"tenant": t} if t else {"x": 1} for t in owner], embeddings=vecs)
    w = s.tenant_where("acme")
    assert w == {"tenant": ["acme", None]}
    for mode in ("dense", "bm25", "hybrid"):
        for q in ("How long is the return window?", "kettle warranty repairs"):
            hits = s.search(q, k=10, where=w, mode=mode)
            assert all(owner[int(h.id[1:])] in ("acme", None) for h in hits), (mode, q)
            if mode == "dense": assert len(hits) == 10                  # pre-filtered: k of them, however rare acme's chunks are
    unfiltered = [h.id for h in s.search("How long is the return window?", k=10, mode="dense")]
    assert any(owner[int(i[1:])] == "globex" for i in unfiltered)      # without the filter another tenant's chunks would come back
    assert sorted(s.ids(s.tenant_where("nobody"))) == sorted(f"c{i}" for i in range(n) if owner[i] is None)


def test_tenant_where_refuses_to_be_widened_and_leaves_untenanted_stores_alone(store):
    s = VectorStore(store.embedder)
    s.add(["a", "b"], ["one", "two"], [{"tenant": "acme"}, {}])
    with pytest.raises(FilterError, match="comes from the caller's key"): s.tenant_where("acme", {"tenant": "globex"})
    with pytest.raises(FilterError, match="comes from the caller's key"): s.tenant_where("acme", {"tenant": {"ne": "x"}})
    for bad in ("", "  ", 5):
        with pytest.raises(FilterError, match="tenant must be a non-empty str"): s.tenant_where(bad)
    with pytest.raises(FilterError, match="where must be a dict"): s.tenant_where("acme", ["tenant"])
    assert s.tenant_where(None, {"x": 1}) == {"x": 1} and s.tenant_where("acme", {"tenant_id": 1}) == {"tenant_id": 1, "tenant": ["acme", None]}
    assert store.tenant_where("acme", {"doc_id": "x"}) == {"doc_id": "x"} and store.tenant_where("acme") is None   # no tenant field
