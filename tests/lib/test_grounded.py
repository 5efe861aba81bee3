"Groundedness checker: public behaviour of `llmops_nb.grounded` (sentences, support scoring, judge, bad input)."
import hashlib, json, random, re, time
import numpy as np
import pytest
from llmops_nb.grounded import (GroundReport, MODES, THRESHOLD, VectorLRU, WINDOW_CACHE, check_grounded, clear_caches, default_embedder,
                                parse_verdict, split_sentences)

POLICY = ["Returns are accepted within 30 days of delivery. Items must be unused and in their original packaging. "
          "Sale items marked final sale cannot be returned.",
          "Refunds go back to the original payment method within 5 business days of inspection. "
          "Original shipping charges are not refunded.",
          "Kestrel members get free return shipping and a return window of 60 days. Membership is free."]


class HashEmbedder:
    "A stand-in embedder: bag of hashed words, counting what it is asked to encode."
    def __init__(self): self.calls, self.texts = 0, []
    def encode(self, texts):
        self.calls += 1; self.texts += list(texts)
        v = np.zeros((len(texts), 128), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()): v[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 128] += 1
        return v


@pytest.fixture(scope="module")
def minilm():
    return default_embedder()


# ---------------------------------------------------------------- sentences
def test_split_sentences_edges():
    assert split_sentences("") == [] and split_sentences("\n \t") == []
    assert [s.text for s in split_sentences("It ships to the U.S. The box is big. J. R. R. Tolkien wrote it.")] == [
        "It ships to the U.S.", "The box is big.", "J. R. R. Tolkien wrote it."]
    assert [s.text for s in split_sentences("1. First step\n2. Second step\n\n[3]")] == ["First step", "Second step"]
    assert all(len(s.text) <= 200 for s in split_sentences("word " * 2000, max_chars=200))
    with pytest.raises(TypeError, match="text must be a str"): split_sentences(b"bytes")
    with pytest.raises(ValueError, match="max_chars"): split_sentences("a b", max_chars=0)


# ---------------------------------------------------------------- support
def test_copied_answer_is_supported_without_embeddings():
    emb = HashEmbedder()
    rep = check_grounded("Returns are accepted within 30 days of delivery. Membership is free.", POLICY, embedder=emb)
    assert rep.supported and rep.score >= THRESHOLD and rep.fraction == 1.0
    assert emb.calls == 0                                                      # the fast path decided
    assert [s.best_context for s in rep.sentences] == [0, 2]


def test_paraphrase_is_supported_with_minilm(minilm):
    answer = "You have 30 days after delivery to return an item. Shipping fees are not refunded."
    rep = check_grounded(answer, POLICY, embedder=minilm)
    assert rep.supported, str(rep)
    assert rep.sentences[1].semantic is not None and rep.sentences[1].lexical < 0.9   # words alone were not enough
    assert not check_grounded(answer, POLICY, semantic="never").supported          # ...as "never" shows


def test_wrong_number_fails(minilm):
    for mode in MODES:
        rep = check_grounded("Returns are accepted within 45 days of delivery.", POLICY, semantic=mode, embedder=minilm)
        assert not rep.supported and rep.sentences[0].missing == ["45"], mode
    rep = check_grounded("Refunds arrive within 60 business days.", POLICY, semantic="always", embedder=minilm)
    assert not rep.supported and "60" in rep.sentences[0].missing           # a number from elsewhere in the policy
    rep = check_grounded("Items must be returned within two weeks.", POLICY, semantic="never")
    assert not rep.supported and rep.sentences[0].missing == ["two"]


def test_invented_entity_and_contradiction_fail(minilm):
    rep = check_grounded("Refunds are handled by Western Union in Denver.", POLICY, semantic="always", embedder=minilm)
    assert not rep.supported and {"Western", "Union", "Denver"} <= set(rep.sentences[0].missing)
    rep = check_grounded("Final sale items can be returned.", POLICY, embedder=minilm)
    assert not rep.supported and rep.sentences[0].missing == ["no 'not'"]
    rep = check_grounded("Refunds never go back to the original payment method.", POLICY, embedder=minilm)
    assert not rep.supported and rep.sentences[0].missing == ["not"]


def test_lone_surrogates_reach_minilm_safely(minilm):
    rep = check_grounded("Returns \ud800 are accepted within 30 days.", ["Returns are accepted within 30 days \udfff of delivery."],
                         semantic="always", embedder=minilm)
    assert rep.supported and rep.sentences[0].semantic is not None


def test_one_bad_sentence_fails_the_answer():
    rep = check_grounded("Returns are accepted within 30 days of delivery. Members get 90 days.", POLICY, embedder=HashEmbedder())
    assert not rep.supported and rep.fraction == 0.5
    assert [s.text for s in rep.unsupported] == ["Members get 90 days."] and rep.score == rep.unsupported[0].score


def test_citations_are_ignored_and_spans_point_into_the_answer():
    plain = check_grounded("Returns are accepted within 30 days of delivery.", POLICY, semantic="never")
    cited = check_grounded("Returns are accepted within 30 days of delivery [1][2]. Membership is free.[3]", POLICY, semantic="never")
    assert cited.supported and cited.sentences[0].score == plain.sentences[0].score and cited.sentences[0].missing == []
    answer = "Intro:\n\n* Returns are accepted within 30 days [1].  \n* Refunds take 5 business days (see [2]).\nThanks!"
    rep = check_grounded(answer, POLICY, embedder=HashEmbedder())
    assert [answer[s.start:s.end] for s in rep.sentences] == [s.text for s in rep.sentences]
    assert rep.sentences[1].text == "Returns are accepted within 30 days [1]."


def test_non_claims_never_count_as_unsupported():    # which sentences are claims (is_claim): the notebook's examples
    rep = check_grounded("Hello! I don't know. Anything else?", [])
    assert rep.supported and rep.score == 1.0 and rep.claims == []


def test_auto_embeds_only_uncertain_sentences_and_caches_passages():
    clear_caches()
    emb = HashEmbedder()
    answer = "Shipping fees are not refunded. Returns are accepted within 30 days of delivery."
    rep = check_grounded(answer, POLICY, embedder=emb)
    assert emb.calls == 1 and emb.texts[0] == "Shipping fees are not refunded."      # one encode call, the copied sentence skipped
    assert rep.supported and [s.semantic is None for s in rep.sentences] == [False, True]
    first = len(emb.texts)
    check_grounded(answer, POLICY, embedder=emb)
    assert emb.calls == 2 and len(emb.texts) == first + 1                            # passages came from WINDOW_CACHE
    assert len(WINDOW_CACHE) > 0
    check_grounded(answer, POLICY, embedder=emb, semantic="never"); assert emb.calls == 2
    check_grounded(answer, POLICY, embedder=emb, semantic="always"); assert emb.calls == 3 and emb.texts[-1] != answer


def test_vector_lru_evicts_oldest():
    c = VectorLRU(maxsize=2)
    c.put("a", 1); c.put("b", 2); c.get("a"); c.put("c", 3)
    assert c.get("b") is None and c.get("a") == 1 and len(c) == 2


def test_question_and_context_forms():
    class Hit:                                                                  # like llmops_nb.retrieval.Hit
        def __init__(self, text): self.id, self.text = "x", text
    ctx = [{"id": "a", "text": POLICY[0]}, Hit(POLICY[2])]
    rep = check_grounded("Membership is free.", ctx, question="Does membership cost?", embedder=HashEmbedder())
    assert rep.supported and rep.sentences[0].best_context == 1
    json.dumps(rep.to_dict())                                                  # plain data for logs
    assert "supported=True" in str(rep) and isinstance(rep, GroundReport)


# ---------------------------------------------------------------- judge
def test_judge_is_asked_and_parsed():
    asked = []
    def judge(prompt):
        asked.append(prompt)
        return "**NO**" if "Claim: Membership is free for 60 days." in prompt else "<think>hmm, no?</think> Yes, it is supported."
    answer = "Becoming a member costs nothing. Membership is free for 60 days."
    rep = check_grounded(answer, POLICY, judge=judge, question="Does membership cost anything?", semantic="never")
    assert [(s.supported, s.judge) for s in rep.sentences] == [(True, True), (True, None)]    # only the unsupported one asked
    assert len(asked) == 1 and "Question: Does membership cost anything?" in asked[0] and "Membership is free." in asked[0]
    assert rep.supported and rep.score < THRESHOLD                              # the score still shows the evidence
    rep = check_grounded(answer, POLICY, judge=judge, judge_margin=1.0, semantic="never")
    assert [(s.supported, s.judge) for s in rep.sentences] == [(True, True), (False, False)] and not rep.supported


def test_judge_failures_leave_the_decision():
    answer = "Returns are accepted within 45 days."
    rep = check_grounded(answer, POLICY, judge=lambda p: "I cannot say", semantic="never")
    assert not rep.supported and rep.sentences[0].judge is None and "not understood" in rep.notes[0]
    rep = check_grounded(answer, POLICY, judge=lambda p: (_ for _ in ()).throw(TimeoutError("slow")), semantic="never")
    assert not rep.supported and "TimeoutError" in rep.notes[0]
    rep = check_grounded(answer, POLICY, judge=lambda p: None, semantic="never")
    assert not rep.supported and "not understood" in rep.notes[0]


@pytest.mark.parametrize("reply,want", [("YES", True), ("no.", False), ("Answer: Not supported.", False), ("Supported", True),
                                        ("<think>yes</think>\nNO", False), ("unclear", None), ("", None), (42, None)])
def test_parse_verdict(reply, want):
    assert parse_verdict(reply) is want


# ---------------------------------------------------------------- bad input
def test_empty_answer_and_empty_contexts():
    rep = check_grounded("", POLICY)
    assert (rep.score, rep.supported, rep.sentences) == (1.0, True, [])
    rep = check_grounded("Returns are accepted within 30 days.", [])
    assert not rep.supported and rep.score == 0.0 and rep.sentences[0].missing == ["30"]
    rep = check_grounded("Returns are accepted within 30 days.", ["", "   "], semantic="always")
    assert not rep.supported


@pytest.mark.parametrize("kwargs,err,msg", [
    (dict(answer=b"bytes"), TypeError, "answer must be a str"), (dict(answer=None), TypeError, "answer must be a str"),
    (dict(contexts="one passage"), TypeError, "wrap a single passage"), (dict(contexts=None), TypeError, "contexts must be"),
    (dict(contexts=[1]), TypeError, r"contexts\[0\]"), (dict(contexts=["ok", {"body": "x"}]), TypeError, r"contexts\[1\]"),
    (dict(judge="gpt"), TypeError, "judge must be a callable"), (dict(question=3), TypeError, "question must be"),
    (dict(embedder="minilm"), TypeError, "embedder must have .encode"),
    (dict(threshold=1.5), ValueError, "threshold"), (dict(threshold="high"), ValueError, "threshold"),
    (dict(semantic="sometimes"), ValueError, "semantic must be one of"), (dict(weight=-1), ValueError, "weight"),
    (dict(max_sentences=0), ValueError, "max_sentences"), (dict(window=True), ValueError, "window")])
def test_bad_arguments_name_the_parameter(kwargs, err, msg):
    args = dict(answer="Returns are free.", contexts=POLICY) | kwargs
    with pytest.raises(err, match=msg):
        check_grounded(args.pop("answer"), args.pop("contexts"), **args)


def test_one_megabyte_answer_is_capped_and_not_passed():
    answer = "Returns are accepted within 30 days of delivery. " * 21000
    t0 = time.perf_counter()
    rep = check_grounded(answer, POLICY, embedder=HashEmbedder())
    assert time.perf_counter() - t0 < 5
    assert len(rep.sentences) == 64 and all(s.supported for s in rep.sentences)
    assert not rep.supported and "max_sentences" in rep.notes[0]            # unchecked text is not vouched for
    t0 = time.perf_counter()
    rep = check_grounded("x" * 1_000_000, POLICY, embedder=HashEmbedder())
    assert time.perf_counter() - t0 < 5 and not rep.supported


def test_huge_context_is_cut_with_a_note():
    rep = check_grounded("Returns are accepted within 30 days of delivery.", [POLICY[0] * 2000], semantic="never",
                         max_context_chars=50_000)
    assert rep.supported and "max_context_chars" in rep.notes[0]


def test_binary_junk_and_mixed_scripts_do_not_crash():
    rng = random.Random(0)
    junk = bytes(rng.randrange(256) for _ in range(20000)).decode("latin-1")
    for text in (junk, junk + "\ud800 lone surrogate.", "\x00\x01\x02", "🙂🙂. ✓✓✓!"):
        rep = check_grounded(text, POLICY + [junk], semantic="always", embedder=HashEmbedder())
        assert isinstance(rep.supported, bool) and 0.0 <= rep.score <= 1.0
    ctx = ["Возврат товара возможен в течение 30 дней. 退货期限为30天。", POLICY[0]]
    rep = check_grounded("Возврат возможен в течение 30 дней. 退货期限为30天。 Returns are accepted within 30 days.", ctx,
                         semantic="never")
    assert rep.supported and len(rep.sentences) == 3
    assert not check_grounded("退货期限为90天。", ctx, semantic="never").supported
