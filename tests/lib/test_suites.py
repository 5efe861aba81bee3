"""Evaluation suites through the installed package: loading and validating cases, run_suite over a real RAG pipeline,
a generator and a function, per-case metrics against direct metric calls, intervals, slices, saving and runs."""
import json, math, re
import numpy as np
import pytest
from llmops_nb import eval as E
from llmops_nb.generate import Generation
from llmops_nb.pipeline import RAGPipeline
from llmops_nb.retrieval import VectorStore
from llmops_nb.corpus import sample_dir
from llmops_nb.suites import (Case, EvalResult, Suite, SuiteAborted, SuiteError, bootstrap_ci, expand_metrics, load_result, load_suite,
                              looks_like_idk, run_suite, strip_citations)

PASSAGES = [("returns#0", "policies/returns.md", "Returns", "Products can be returned within 30 days of delivery. Kestrel Circle members have 60 days."),
            ("returns#1", "policies/returns.md", "Returns", "Opened consumables such as descaling solution can only be returned unopened."),
            ("faq-001#0", "faq/faq.jsonl#faq-001", "FAQ", "You have 30 days to return a product, or 60 days as a Kestrel Circle member."),
            ("warranty#0", "policies/warranty.md", "Warranty", "All appliances have a 2 year warranty. The Pro line has a 3 year warranty."),
            ("shipping#0", "policies/shipping.md", "Shipping", "Express shipping costs 9.90 EUR and delivers in 1-2 business days.")]
FACTS = {"return": "Products can be returned within 30 days of delivery", "warranty": "All appliances have a 2 year warranty",
         "express": "Express shipping costs 9.90 EUR"}


class Scripted:
    "A generator stand-in: answers from the numbered passage holding a known fact (citing it), else 'I don't know.'; fails on 'boom'."
    def __init__(self): self.calls = []
    def generate(self, prompt, **kw):
        self.calls.append(kw)
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        question = text.rsplit("Question:", 1)[-1].lower()
        if "boom" in question: raise RuntimeError("model crashed")
        for key, fact in FACTS.items():
            if key in question and (m := re.search(r"\[(\d)\][^\[]*" + re.escape(fact), text)):
                return Generation(f"{fact} [{m.group(1)}].", "stop", len(text.split()), 12, 0.001, "scripted")
        return Generation("I don't know.", "stop", len(text.split()), 4, 0.001, "scripted")
    def info(self): return {"model": "scripted", "model_digest": None}


CASES = [
    {"id": "r1", "question": "How long is the return window?", "answer": ["Products can be returned within 30 days of delivery.", "30 days"],
     "doc_ids": ["policies/returns.md", "faq/faq.jsonl#faq-001", "policies/returns_copy.md"], "answerable": True, "tags": ["returns", "easy"]},
    {"id": "w1", "question": "What warranty do appliances have?", "answer": "All appliances have a 2 year warranty.",
     "doc_ids": ["policies/warranty.md"], "answerable": True, "tags": ["warranty"]},
    {"id": "s1", "question": "What does express shipping cost?", "answer": "9.90 EUR, delivered in 1-2 business days.",
     "doc_ids": ["policies/shipping.md"], "answerable": True, "tags": ["shipping", "easy"]},
    {"id": "u1", "question": "Who is the CEO of Kestrel?", "answer": "I don't know.", "answerable": False, "tags": ["unanswerable"]},
    {"id": "e1", "question": "boom: what is the return policy?", "answer": "30 days", "doc_ids": ["policies/returns.md"], "answerable": True,
     "tags": ["returns"]},
    {"id": "n1", "question": "Where do I register my appliance?", "tags": ["warranty"]},   # no references, no doc ids, answerable unknown
]


@pytest.fixture(scope="module")
def store():
    s = VectorStore()
    s.add([p[0] for p in PASSAGES], [p[3] for p in PASSAGES], [{"doc_id": p[1], "title": p[2]} for p in PASSAGES])
    return s


@pytest.fixture(scope="module")
def rag(store):
    return RAGPipeline(store, Scripted(), k=2)


@pytest.fixture(scope="module")
def result(rag):
    return run_suite(rag, load_suite(CASES, name="demo"), price={"prompt": 0.15, "completion": 0.6})


# ---------------------------------------------------------------- loading
def test_sample_suites_load():
    smoke = load_suite(sample_dir() / "eval" / "suite.yaml")
    assert smoke.name == "kestrel-smoke" and len(smoke) >= 10 and smoke.path.endswith("suite.yaml")
    assert any(c.answerable is False for c in smoke) and all(c.tags and c.references for c in smoke)
    assert smoke["warranty-standard"].where == {"type": "markdown"} and len(smoke["returns-window"].references) == 2
    assert any(re.search(r"[^\x00-\x7f]", c.input) for c in smoke)
    qa = load_suite(sample_dir() / "qa.jsonl")
    assert len(qa) == 101 and qa.name == "qa" and qa["q001"].references[0].startswith("30 days") and qa["q087"].answerable is False
    assert qa["q001"].doc_ids[0] == "policies/returns.md" and "returns" in qa["q001"].tags
    assert load_suite(qa).digest == qa.digest == load_suite([c.__dict__ for c in qa]).digest
    assert len(qa.select(tags="unanswerable")) < len(qa) and qa.select(ids=["q002"])[0].id == "q002"


def test_aliases_meta_and_default_ids():
    s = load_suite([{"prompt": "Hi?", "reference": "Hello", "context": "a passage", "difficulty": 3},
                    {"input": "Grüße aus Köln 🙂?", "answers": ["Hallo", "Servus"], "meta": {"source": "hand"}}])
    a, b = s.cases
    assert (a.input, a.references, a.contexts, a.meta) == ("Hi?", ["Hello"], ["a passage"], {"difficulty": 3})
    assert b.references == ["Hallo", "Servus"] and b.meta == {"source": "hand"} and a.id != b.id
    assert load_suite([{"input": "Hi?"}])[0].id == a.id          # derived from the input: stable when cases move


@pytest.mark.parametrize("lines, match", [
    ('{"id": "a", "question": "ok?"}\n{"id": "b", "answer": "x"}\n', r"bad\.jsonl:2 \(id 'b'\): field 'input' is missing"),
    ('{"id": "a", "question": "ok?", "answer": 30}\n', r"bad\.jsonl:1 \(id 'a'\): field 'references': expected a string or a list of strings, got int"),
    ('{"id": "a", "question": "ok?", "answer": ["x", null]}\n', r"field 'references': item 1 is a NoneType"),
    ('{"id": "a", "question": "ok?"}\n\n{"id": "a", "question": "again?"}\n', r"bad\.jsonl:3: duplicate case id 'a' \(first at .*bad\.jsonl:1\)"),
    ('{"id": "a", "question": "ok?"\n', r"bad\.jsonl:1: invalid JSON"),
    ('[1, 2]\n', r"bad\.jsonl:1: a case must be a mapping"),
    ('{"id": "a", "question": "  "}\n', r"field 'input' is empty"),
    ('{"id": "a", "question": ["two", "questions"]}\n', r"field 'input': expected a string, got list"),
    ('{"id": "a", "question": "q", "input": "q"}\n', r"fields 'question' and 'input' both give 'input'"),
    ('{"id": "a", "question": "q", "tags": {"x": 1}}\n', r"field 'tags': expected a string or a list of strings, got dict"),
    ('{"id": "a", "question": "q", "answerable": "no"}\n', r"field 'answerable'"),
    ('{"id": "a", "question": "q", "doc_ids": 12}\n', r"field 'doc_ids'"),
    ('\n  \n', r"no cases"),
])
def test_jsonl_errors_name_line_and_field(tmp_path, lines, match):
    p = tmp_path / "bad.jsonl"
    p.write_text(lines, encoding="utf-8")
    with pytest.raises(SuiteError, match=match):
        load_suite(p)


def test_yaml_errors_name_line_case_and_field(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: t\ncases:\n  - id: a\n    input: fine\n\n  - id: b\n    question: also fine\n    answer: 2\n", encoding="utf-8")
    with pytest.raises(SuiteError, match=r"s\.yaml:6: case 1 \(id 'b'\): field 'references'.*quote it"):
        load_suite(p)
    p.write_text("- input: a\n- input: b\n  id: 1\n- input: c\n  id: 1\n", encoding="utf-8")       # a top-level list, integer ids
    with pytest.raises(SuiteError, match=r"s\.yaml:4: case 2: duplicate case id '1' \(first at .*s\.yaml:2: case 1\)"):
        load_suite(p)
    for text, match in [("name: t\n", "no 'cases' list"), ("cases: {a: 1}\n", "'cases' must be a list"), ("cases: []\n", "no cases"),
                        ("cases:\n  - input: [\n", "invalid YAML"), ("nmae: t\ncases: []\n", "unknown top-level key 'nmae'"),
                        ("name: [1]\ncases:\n  - input: a\n", "'name' must be a string"),
                        ("cases:\n  - input: a\nmetrics: [rouge, blue]\n", "metrics: .*blue")]:
        p.write_text(text, encoding="utf-8")
        with pytest.raises(SuiteError, match=match):
            load_suite(p)


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_suite(tmp_path / "missing.yaml")
    with pytest.raises(SuiteError, match="is a folder"):
        load_suite(tmp_path)
    (tmp_path / "s.csv").write_text("input\nhi\n")
    with pytest.raises(SuiteError, match="unknown suite format '.csv'"):
        load_suite(tmp_path / "s.csv")
    (tmp_path / "junk.jsonl").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(SuiteError, match="not UTF-8"):
        load_suite(tmp_path / "junk.jsonl")
    (tmp_path / "junk.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SuiteError, match="junk.yaml"):
        load_suite(tmp_path / "junk.yaml")
    with pytest.raises(TypeError, match="got dict"):
        load_suite({"cases": []})
    with pytest.raises(SuiteError, match=r"cases\[0\]: a case must be a mapping"):
        load_suite([None])
    with pytest.raises(SuiteError, match="no cases"):
        load_suite([])


def test_huge_and_non_ascii_inputs(tmp_path):
    p = tmp_path / "big.jsonl"
    big = "word " * 210_000                                                  # about 1 MB on one line
    p.write_text(json.dumps({"id": "big", "input": big, "answer": "x"}) + "\n" +
                 json.dumps({"id": "ja", "input": "返品期間は？", "answer": "30日"}, ensure_ascii=False) + "\n", encoding="utf-8")
    s = load_suite(p)
    assert len(s["big"].input) == len(big) and s["ja"].references == ["30日"]
    r = run_suite(lambda q: "30日" if "返品" in q else "", s, metrics=["text", "behaviour"])
    assert r.values("exact_match") == {"big": 0.0, "ja": 1.0} and r.corpus["errors"] == 0


# ---------------------------------------------------------------- running
def test_rag_rows_match_direct_metric_calls(result, store, rag):
    rows = {r["id"]: r for r in result.cases}
    assert [rows[i]["status"] for i in ("r1", "w1", "s1", "u1", "e1", "n1")] == ["answered", "answered", "answered", "idk", "error", "idk"]
    ok = [c for c in CASES if c["id"] in ("r1", "w1", "s1", "u1")]
    preds = [strip_citations(rows[c["id"]]["output"]) for c in ok]              # references carry no [n] markers
    assert preds[0] == "Products can be returned within 30 days of delivery." and rows["r1"]["output"].endswith("].")
    refs = [c["answer"] if isinstance(c["answer"], list) else [c["answer"]] for c in ok]
    for c, p, rf in zip(ok, preds, refs):
        r = rows[c["id"]]
        assert r["exact_match"] == E.exact_match(p, rf) and r["token_f1"] == pytest.approx(E.token_f1(p, rf))
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert [rows[c["id"]][name] for c in ok] == pytest.approx([d[name] for d in E.rouge(preds, refs, per_pair=True)])
    assert [rows[c["id"]]["bleu"] for c in ok] == pytest.approx(E.bleu(preds, refs, per_pair=True))
    assert [rows[c["id"]]["chrf"] for c in ok] == pytest.approx(E.chrf(preds, refs, per_pair=True))
    # retrieval is scored over document ids; the deduplicated copy that is not in the store is not counted as missed
    r1 = rows["r1"]
    chunks = next(s for s in rag.answer(CASES[0]["question"]).trace.steps if s.name == "retrieve").data["ids"]
    assert r1["retrieved"] == list(dict.fromkeys(store.get(c).metadata["doc_id"] for c in chunks))
    want = E.retrieval_scores(r1["retrieved"], ["policies/returns.md", "faq/faq.jsonl#faq-001"], k=2)
    assert {m: r1[m] for m in want} == pytest.approx(want)
    assert result.meta["relevant_not_indexed"] == 1 and result.meta["retrieval_k"] == 2
    # NaN where a metric does not apply
    assert math.isnan(rows["u1"]["recall_at_k"]) and math.isnan(rows["n1"]["token_f1"]) and math.isnan(rows["n1"]["correct_refusal"])
    assert (rows["u1"]["correct_refusal"], rows["r1"]["correct_refusal"]) == (1.0, 1.0)
    assert rows["u1"]["refused"] == E.refusal_rate(["idk"]) and rows["r1"]["blocked"] == 0.0
    # tokens and cost come from the trace's generate step
    assert rows["w1"]["completion_tokens"] == 12 and rows["w1"]["prompt_tokens"] > 0 and re.fullmatch(r"[0-9a-f]{32}", rows["w1"]["trace_id"])
    assert rows["w1"]["cost_usd"] == pytest.approx(E.cost(rows["w1"]["prompt_tokens"], 12, {"prompt": 0.15, "completion": 0.6}))


def test_error_case_is_recorded_and_the_suite_goes_on(result):
    e1 = next(r for r in result.cases if r["id"] == "e1")
    assert e1["status"] == "error" and e1["error_message"] == "RuntimeError: model crashed" and e1["output"] == ""
    assert (e1["error"], e1["exact_match"], e1["token_f1"], e1["rouge1"], e1["bleu"], e1["correct_refusal"]) == (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert all(r["error"] == 0.0 and r["error_message"] is None for r in result.cases if r["id"] != "e1")
    assert e1["retrieved"] and e1["retrieved"][0] in ("policies/returns.md", "faq/faq.jsonl#faq-001")
    assert not math.isnan(e1["recall_at_k"])                            # the retrieval before the crash was kept from the trace
    assert math.isnan(e1["completion_tokens"]) and math.isnan(e1["cost_usd"]) and e1["latency_ms"] > 0
    assert result.aggregates["error"]["mean"] == pytest.approx(1 / 6) and result.corpus["error_rate"] == pytest.approx(1 / 6)


def test_aggregates_corpus_and_meta(result):
    assert result.metrics[:8] == ["exact_match", "token_f1", "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf"]
    assert {"recall_at_k", "hit", "refused", "blocked", "error", "correct_refusal", "latency_ms", "completion_tokens", "cost_usd"} <= set(result.metrics)
    assert "answer_relevance" not in result.metrics and "groundedness" not in result.metrics      # opt-in: they load an embedder
    for m, a in result.aggregates.items():
        assert set(a) == {"mean", "low", "high", "n", "std"}
        vals = [v for v in result.values(m).values() if not math.isnan(v)]
        assert a["n"] == len(vals)
        if vals: assert a["low"] <= a["mean"] <= a["high"] and a["mean"] == pytest.approx(np.mean(vals))
    assert result.aggregates["token_f1"]["n"] == 5 and result.aggregates["recall_at_k"]["n"] == 4
    c = result.corpus
    assert c["cases"] == 6 and c["errors"] == 1 and c["cases_per_s"] > 0 and c["latency_p50_ms"] <= c["latency_p95_ms"]
    with_refs = [x for x in CASES if "answer" in x]
    preds = [strip_citations(next(r["output"] for r in result.cases if r["id"] == x["id"])) for x in with_refs]
    refs = [x["answer"] if isinstance(x["answer"], list) else [x["answer"]] for x in with_refs]
    assert c["bleu"] == pytest.approx(E.bleu(preds, refs)) and c["chrf"] == pytest.approx(E.chrf(preds, refs))
    assert c["cost_usd_total"] == pytest.approx(np.nansum([r["cost_usd"] for r in result.cases]))
    assert c["refusal_rate"] == pytest.approx(E.refusal_rate([r["status"] for r in result.cases]))
    assert result.meta["generator"]["model"] == "scripted" and result.meta["prompt"].startswith("rag@") and result.meta["k"] == 2
    assert result.suite == "demo" and result.suite_digest == load_suite(CASES).digest and result.meta["duration_s"] > 0


def test_function_and_generator_systems():
    s = load_suite(CASES[:4], name="mini")
    seen = []
    def fn(q):
        seen.append(q)
        if "warranty" in q: return Generation("All appliances have a 2 year warranty.", "stop", 7, 9, 0.01, "m")
        if "express" in q: return {"text": "9.90 EUR", "status": "answered"}
        return "30 days" if "return" in q else "I do not know."
    r = run_suite(fn, s)
    assert seen == [c["question"] for c in CASES[:4]] and "recall_at_k" not in r.metrics and r.meta["kind"] == "callable"
    v = r.values("exact_match")
    assert v == {"r1": 1.0, "w1": 1.0, "s1": 0.0, "u1": 0.0} and r.values("correct_refusal")["u1"] == 1.0
    assert r.cases[1]["completion_tokens"] == 9 and math.isnan(r.cases[0]["completion_tokens"])
    gen = Scripted()
    g = run_suite(gen, s, metrics=["exact_match", "behaviour"], seed=7)
    assert g.meta["kind"] == "generator" and all(kw.get("seed") == 7 for kw in gen.calls) and len(gen.calls) == 4
    assert g.metrics == ["exact_match", "refused", "blocked", "error", "correct_refusal"]
    bad = run_suite(lambda q: 42, s, metrics=["exact_match", "error"])
    assert bad.values("error") == {c: 1.0 for c in ("r1", "w1", "s1", "u1")} and "returned int" in bad.cases[0]["error_message"]


def test_options_and_bad_arguments(rag):
    s = load_suite(CASES, name="demo")
    assert [r["id"] for r in run_suite(rag, s, limit=2).cases] == ["r1", "w1"]
    par = run_suite(rag, s, workers=4, metrics=["exact_match", "error"])
    assert [r["id"] for r in par.cases] == [c["id"] for c in CASES] and par.values("error")["e1"] == 1.0
    with pytest.raises(SuiteAborted, match=r"1 cases failed \(max_errors=0\); first: case 'e1': RuntimeError: model crashed"):
        run_suite(rag, s, max_errors=0)
    assert run_suite(rag, s, max_errors=1, metrics=["error"]).corpus["errors"] == 1
    for kw, match in [(dict(metrics=["judge:correctness"]), "needs judge="), (dict(metrics=["cost_usd"]), "needs price="),
                      (dict(metrics=["blue"]), "blue"), (dict(price={"prompt": "1"}), r"price\['prompt'\]"), (dict(price=[1, 2]), "price must be"),
                      (dict(limit=0), "limit must be"), (dict(workers=1.5), "workers must be"), (dict(k=True), "k must be"),
                      (dict(metrics=["judge:"]), "needs a rubric")]:
        with pytest.raises(ValueError, match=match):
            run_suite(rag, s, **kw)
    with pytest.raises(TypeError, match="got str"):
        run_suite("not a pipeline", s)
    with pytest.raises(SuiteError, match=r"cases\[0\]: field 'input' is missing"):
        run_suite(rag, [{"answer": "x"}])


def test_judge_and_model_metrics(rag, store, tmp_path):
    from llmops_nb.judge import Judge
    class JudgeModel:
        def generate(self, prompt, **kw):
            return Generation('{"score": 5, "reason": "matches the reference"}', "stop", 10, 10, 0.0, "judge-model")
        def info(self): return {"model": "judge-model", "model_digest": "d" * 64}
    judge = Judge(JudgeModel(), registry=tmp_path / "prompts", cache=None)
    s = load_suite(CASES, name="demo")
    r = run_suite(rag, s, metrics=["judge:correctness", "answer_relevance", "groundedness", "error"], judge=judge, embedder=store.embedder)
    jc, rel, gr = r.values("judge:correctness"), r.values("answer_relevance"), r.values("groundedness")
    assert jc["r1"] == 1.0 and jc["e1"] == 0.0 and r.meta["judge"]["judge:correctness"]["rubric"] == "correctness"
    assert rel["e1"] == 0.0 and all(-1.0 <= v <= 1.0 for v in rel.values())
    assert rel["r1"] == pytest.approx(E.answer_relevance([CASES[0]["question"]], [strip_citations(r.cases[0]["output"])], embedder=store.embedder)[0])
    assert gr["r1"] > 0.5 and math.isnan(gr["u1"]) and gr["e1"] == 0.0          # a refusal makes no claim to check


def test_idk_detection():
    assert looks_like_idk("I don't know.") and looks_like_idk("I cannot answer that from the documents.")
    assert not looks_like_idk("The warranty is 2 years. I don't know about the Pro line.") and not looks_like_idk("")


# ---------------------------------------------------------------- intervals and slices
def test_bootstrap_ci_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200, 2000):
        x = rng.binomial(1, 0.7, n).astype(float)
        lo, hi = bootstrap_ci(x, seed=1)
        assert lo <= x.mean() <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2] and widths[2] < 0.06
    assert bootstrap_ci([0.2, 0.9, 0.4], seed=5) == bootstrap_ci([0.2, 0.9, 0.4], seed=5)
    assert bootstrap_ci([1.0, float("nan"), 3.0], n_resamples=500) == bootstrap_ci([1.0, 3.0], n_resamples=500)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    lo, hi = bootstrap_ci(np.arange(100.0), stat=np.median)
    assert lo < 49.5 < hi
    for bad, match in [(dict(values=["x"]), "numbers"), (dict(values=[1, 2], alpha=0), "alpha"), (dict(values=[1, 2], n_resamples=-3), "n_resamples")]:
        with pytest.raises((ValueError, TypeError), match=match):
            bootstrap_ci(**bad)


def test_slices_count_each_tag_and_any_field(result):
    sl = result.slices()
    assert list(sl.columns) == ["slice", "metric", "n", "mean", "low", "high"] and sl.attrs["by"] == "tags"
    assert sorted(set(sl.slice)) == ["easy", "returns", "shipping", "unanswerable", "warranty"]
    err = sl[sl.metric == "error"].set_index("slice")
    assert err.loc["returns", "n"] == 2 and err.loc["easy", "n"] == 2 and err.loc["returns", "mean"] == 0.5   # r1 counts in returns and easy
    st = result.slices(by="status", metrics=["token_f1"])
    assert dict(zip(st.slice, st.n)) == {"answered": 3, "error": 1, "idk": 1}
    assert set(result.slices(by="answerable", metrics=["error"]).slice) == {"True", "False", "None"}
    with pytest.raises(KeyError, match="no case has a field 'colour'"):
        result.slices(by="colour")
    with pytest.raises(KeyError, match="not in this result"):
        result.slices(metrics=["blue"])


def test_table_summary_and_display(result):
    t = result.table
    assert list(t.columns[:14]) == ["id", "input", "output", "references", "tags", "status", "error", "error_message", "latency_ms",
                                   "prompt_tokens", "completion_tokens", "cost_usd", "retrieved", "trace_id"]
    assert len(t) == 6 and set(result.metrics) <= set(t.columns)
    s = result.summary()
    assert list(s.columns) == ["mean", "low", "high", "n", "std"] and s.loc["error", "n"] == 6
    md = result._repr_markdown_()
    assert "6 cases, 1 errors" in md and "| token_f1 |" in md
    with pytest.raises(KeyError, match="not in this result"):
        result.values("blue")


# ---------------------------------------------------------------- saving, runs, W&B
def test_save_load_round_trip(result, tmp_path):
    d = result.save(tmp_path / "res")
    assert sorted(p.name for p in d.iterdir()) == ["cases.jsonl", "eval_result.json"]
    json.loads((d / "eval_result.json").read_text())                          # strict JSON: NaN stored as null
    assert "NaN" not in (d / "cases.jsonl").read_text()
    back = EvalResult.load(d)
    assert (back.suite, back.suite_digest, back.metrics) == (result.suite, result.suite_digest, result.metrics)
    for m in result.metrics:
        a, b = result.values(m), back.values(m)
        assert a.keys() == b.keys() and all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)
    assert back.cases[0]["references"] == result.cases[0]["references"] and back.meta["seed"] == 0
    assert load_result(d / "eval_result.json").suite == "demo" and load_result(back) is back
    result.save(d)                                                            # overwriting is fine
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_load_errors(result, tmp_path):
    d = result.save(tmp_path / "res")
    with pytest.raises(FileNotFoundError, match="neither a result folder"):
        load_result("20990101-000000-abcdef", runs_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no eval_result.json"):
        load_result(tmp_path / "empty")
    lines = (d / "cases.jsonl").read_text().splitlines()
    (d / "cases.jsonl").write_text("\n".join(lines[:-1]) + "\n")               # a torn or edited cases file
    with pytest.raises(ValueError, match="does not match eval_result.json"):
        EvalResult.load(d)
    (d / "cases.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        EvalResult.load(d)
    (d / "eval_result.json").write_bytes(b"\x00\x01 not json")
    with pytest.raises(ValueError, match="not a valid result file"):
        EvalResult.load(d)
    (d / "eval_result.json").write_text('{"format": "something/else"}')
    with pytest.raises(ValueError, match="not an eval result"):
        EvalResult.load(d)
    with pytest.raises(TypeError, match="got int"):
        load_result(3)


def test_log_to_run_and_load_by_run_id(result, home):
    from llmops_nb.runs import read_run, start_run
    run = start_run("evaluate", {"suite": "demo"}, tracker="none")
    d = result.log_to(run)
    run.finish()
    rec = read_run(run.dir)
    assert rec.metrics["eval/error"] == pytest.approx(1 / 6) and rec.metrics["eval/corpus/cases"] == 6
    assert not any(isinstance(v, float) and math.isnan(v) for v in rec.metrics.values())
    assert d == run.dir / "eval" and rec.lineage["outputs"]["eval"]["path"] == "eval"
    by_id = load_result(run.id)                                                   # the runs_dir of the settings (home)
    assert by_id.suite_digest == result.suite_digest and load_result(run.dir).metrics == result.metrics
    with pytest.raises(TypeError, match="must be a llmops_nb.runs.Run"):
        result.log_to("not a run")


def test_wandb_table_and_tracker(result, home):
    t = result.to_wandb_table()
    assert t.columns[:3] == ["id", "input", "output"] and len(t.data) == 6
    assert json.loads(t.data[0][t.columns.index("tags")]) == ["returns", "easy"]
    from llmops_nb.runs import NoTracker, start_run
    run = start_run("evaluate", tracker="none")
    logged = []
    class FakeTracker(NoTracker):                                                  # what every tracker is handed
        def log_table(self, name, table): logged.append((name, table))
    run.tracker = FakeTracker()
    result.log_to(run)
    assert [n for n, _ in logged] == ["eval/cases"] and len(logged[0][1]) == 6 and list(logged[0][1].columns[:3]) == ["id", "input", "output"]
