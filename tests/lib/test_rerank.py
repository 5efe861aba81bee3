"Re-rankers through the installed package: a tiny trained cross-encoder, an LLM judge (local and endpoint), bad input."
import json
import pytest
from llmops_nb.core import ModelNotAvailable
from llmops_nb.generate import GenerationError, HFGenerator, OpenAICompatGenerator
from llmops_nb.rerank import (CrossEncoderReranker, LLMReranker, check_hits, contrastive_pairs, make_reranker,
                              make_tiny_cross_encoder, rescore, train_cross_encoder)
from llmops_nb.retrieval import Hit, VectorStore
from llmops_nb.testing import FakeOpenAIServer

DOCS = {"ship": "Orders ship within two working days; standard shipping takes 3 to 5 days.",
        "ret": "Returns are free for 30 days with the receipt; members have 60 days.",
        "war": "The warranty on the kettle is two years; register the product to extend it by one year."}
QS = {"how long is the warranty": "war", "what is the return window": "ret", "where is my order": "ship"}


@pytest.fixture(scope="module")
def store():
    s = VectorStore()
    s.add(list(DOCS), list(DOCS.values()), [{"doc_id": k} for k in DOCS])
    return s


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory):
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny")


@pytest.fixture(scope="module")
def trained(tiny_ce, tmp_path_factory):
    "The tiny cross-encoder trained a few seconds on toy pairs built from the three passages."
    pairs = contrastive_pairs(list(QS), [DOCS[d] for d in QS.values()], negatives=2) * 8
    return train_cross_encoder(pairs, tmp_path_factory.mktemp("ce") / "trained", base=tiny_ce, epochs=15,
                               batch_size=8, learning_rate=3e-3)


def test_trained_cross_encoder_ranks_the_positive_first(store, trained, tiny_ce):
    r = CrossEncoderReranker(trained)
    for q, want in QS.items():
        hits = store.search(q, k=3, mode="hybrid", rerank=r, fetch_k=3)
        assert hits[0].id == want, (q, [h.id for h in hits])
        assert hits[0].score > hits[-1].score            # re-scored, sorted, best first
        assert {h.metadata["retrieval_rank"] for h in hits} == {1, 2, 3} and all("retrieval_score" in h.metadata for h in hits)
    card = json.loads((trained / "cross_encoder.json").read_text())
    assert card["pairs"] == 72 and card["positives"] == 24 and card["params"]["epochs"] == 15
    assert card["base"] == str(tiny_ce) and len(card["data_digest"]) == 64
    assert r.info()["kind"] == "cross-encoder" and r.name == "cross-encoder:trained"


def test_training_is_reproducible_and_data_digest_changes_with_data(tiny_ce, tmp_path):
    pairs = contrastive_pairs(list(QS), [DOCS[d] for d in QS.values()], negatives=1)
    a = train_cross_encoder(pairs, tmp_path / "a", base=tiny_ce, epochs=1, batch_size=4)
    b = train_cross_encoder(pairs, tmp_path / "b", base=tiny_ce, epochs=1, batch_size=4)
    c = train_cross_encoder(pairs[::-1], tmp_path / "c", base=tiny_ce, epochs=1, batch_size=4)
    card = lambda p: json.loads((p / "cross_encoder.json").read_text())
    assert card(a)["data_digest"] == card(b)["data_digest"] != card(c)["data_digest"]
    hits = [Hit(k, 0.0, t) for k, t in DOCS.items()]
    sa, sb = ([h.score for h in CrossEncoderReranker(p)("where is my order", hits)] for p in (a, b))
    assert sa == pytest.approx(sb, abs=1e-5)


def test_bad_training_input_names_the_pair(tiny_ce, tmp_path):
    out = tmp_path / "x"
    for pairs, msg in [([], "pairs is empty"), ("q,p,1", "pairs must be a list"), (None, "pairs must be a list"),
                       ([("q", "p")], "pairs[0] must be (query, passage, label)"),
                       ([("q", "p", 1), ("q", "p", "yes")], "pairs[1]: label must be a number"),
                       ([("q", "p", 1), ("q", None, 0)], "pairs[1]: query and passage"),
                       ([("q", "p", 1), ("q", "p", True)], "pairs[1]: label"),
                       ([("q", "p", 1)] * 3, "both relevant")]:
        with pytest.raises((TypeError, ValueError), match=msg.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            train_cross_encoder(pairs, out, base=tiny_ce)
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        train_cross_encoder([("q", "p", 1), ("q", "o", 0)], out, base=tmp_path / "missing")
    with pytest.raises(ValueError, match="learning_rate"):
        train_cross_encoder([("q", "p", 1), ("q", "o", 0)], out, base=tiny_ce, learning_rate=0)
    assert not out.exists()                              # nothing half-written


def test_cross_encoder_rejects_models_that_are_not_cross_encoders(tmp_path, tiny_model, tiny_ce):
    with pytest.raises(ValueError, match="is not a cross-encoder"):
        CrossEncoderReranker(tiny_model)                 # a causal LM
    with pytest.raises(ValueError, match="is not a cross-encoder"):
        CrossEncoderReranker("all-minilm-l6-v2")         # an embedder: no relevance head
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        CrossEncoderReranker(tmp_path / "empty")
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        CrossEncoderReranker(tiny_ce, max_length=0)


def test_reranker_input_checks(tiny_ce):
    r = CrossEncoderReranker(tiny_ce)
    assert r("q", []) == []
    with pytest.raises(ValueError, match="query must be a non-empty str"):
        r("  ", [Hit("a", 1.0, "x")])
    with pytest.raises(TypeError, match=r"hits\[1\] must be a Hit"):
        r("q", [Hit("a", 1.0, "x"), {"id": "b"}])
    long = [Hit(str(i), 0.0, "warranty " * 5000) for i in range(3)]   # far past max_length: cut, not an error
    assert len(r("how long is the warranty", long)) == 3
    with pytest.raises(ValueError, match="2 scores for 1 hits"):
        rescore([Hit("a", 1.0, "x")], [1.0, 2.0])
    with pytest.raises(TypeError, match="must be a list of Hit"):
        check_hits("abc")


def test_contrastive_pairs():
    pairs = contrastive_pairs(["q1", "q2", "q3", "q4"], ["p1", "p2", "p3", "p4"], negatives=2, seed=3)
    assert len(pairs) == 12 and pairs == contrastive_pairs(["q1", "q2", "q3", "q4"], ["p1", "p2", "p3", "p4"], 2, seed=3)
    for q, p, y in pairs:
        assert (y == 1.0) == (p == "p" + q[1:])
    with pytest.raises(ValueError, match="negatives must be in 0..3"):
        contrastive_pairs(["q1", "q2", "q3", "q4"], ["p1", "p2", "p3", "p4"], negatives=4)


def test_llm_reranker_local_scores_match_one_by_one(store, tiny_model):
    gen = HFGenerator(tiny_model, chat=True)
    r = LLMReranker(gen, batch_size=2)
    hits = store.search("how long is the warranty", k=3, mode="hybrid")
    out = r("how long is the warranty", hits)
    assert sorted(h.id for h in out) == sorted(h.id for h in hits)
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)
    alone = {h.id: r("how long is the warranty", [h])[0].score for h in hits}
    for h in out:                                        # batching with padding does not change a score
        assert h.score == pytest.approx(alone[h.id], abs=1e-4)
    # the score is the log-odds of the Yes over the No spellings in the next-token distribution
    lp = gen.next_token_logprobs(r.prompts("how long is the warranty", hits[:1]))[0]
    import numpy as np
    yes, no = r._ids
    want = np.logaddexp.reduce(lp[yes]) - np.logaddexp.reduce(lp[no])
    assert alone[hits[0].id] == pytest.approx(float(want), abs=1e-4)
    assert r.info()["kind"] == "llm" and r.name.startswith("llm:")


def judge(prompt: str) -> dict:
    "A fake judge: 'Yes' when the passage mentions the warranty."
    passage = prompt.split("Question:")[0]
    return {"Yes": -0.1, " yes": -3.0, "No": -2.5} if "warranty" in passage else {"No": -0.2, "Yes": -1.9}


def test_llm_reranker_with_an_endpoint_that_returns_logprobs(store):
    with FakeOpenAIServer(reply=lambda q: "Yes", logprobs=judge) as srv:
        r = LLMReranker(OpenAICompatGenerator(srv.url, "judge", max_workers=2))
        out = store.search("how long is the kettle covered", k=3, mode="hybrid", rerank=r, fetch_k=3)
        bodies = [q["body"] for q in srv.requests]
    assert out[0].id == "war" and out[0].score > 2 and out[1].score < 0
    assert len(bodies) == 3 and all(b["max_tokens"] == 1 and b["logprobs"] is True and b["top_logprobs"] == 20
                                     for b in bodies)
    assert "Does the passage answer the question?" in bodies[0]["messages"][0]["content"]


def test_llm_reranker_endpoint_without_logprobs_is_a_clear_error(store):
    with FakeOpenAIServer() as srv:
        r = LLMReranker(OpenAICompatGenerator(srv.url, "plain"))
        with pytest.raises(GenerationError, match=r"chat/completions \(model 'plain'\) answered without logprobs"):
            store.search("warranty", k=1, rerank=r, fetch_k=3)


def test_make_reranker(trained, tiny_model):
    assert isinstance(make_reranker(f"cross-encoder:{trained}"), CrossEncoderReranker)
    assert isinstance(make_reranker(f"llm:{tiny_model}"), LLMReranker)
    for bad, err, msg in [("llm", ValueError, "pass generator="), ("cross-encoder:", ValueError, "must be"),
                          ("colbert", ValueError, "must be"), (3, TypeError, "must be a str")]:
        with pytest.raises(err, match=msg):
            make_reranker(bad)
    with pytest.raises(TypeError, match="generator must be an HFGenerator"):
        LLMReranker(object())
