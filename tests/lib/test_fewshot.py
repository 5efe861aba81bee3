"Few-shot evaluation through the installed package: the copy check and zero-shot vs k-shot on a tiny pipeline."
import json, math
import pytest
from llmops_nb.fewshot import DEFAULT_METRICS, check_copying, compare_shots
from llmops_nb.generate import Generation
from llmops_nb.pipeline import RAGPipeline
from llmops_nb.retrieval import VectorStore

EX = [{"question": "How many browning levels does the Pro Long-Slot Toaster have?",
       "answer": "The Pro Long-Slot Toaster has 9 browning levels [1].", "context": "9 browning levels, two long slots."},
      {"question": "How much dust does the Pro Swift Max bin hold?", "answer": "The Pro Swift Max bin holds 0.8 L [1].",
       "context": "The Swift holds 0.6 L, the Pro Swift Max 0.8 L."}]
KETTLE = ["The Pro kettle has five preset temperatures: 40, 70, 80, 90 and 100 °C. It keeps water warm for 30 minutes."]


def test_copy_check_flags_a_copy_and_not_a_grounded_answer():
    answers = ["The Pro Long-Slot Toaster has 9 browning levels [1].",            # verbatim copy, off topic
               "The Pro Long Slot toaster has 9 browning levels.",                # near copy
               "The Pro kettle keeps water warm for 30 minutes [1].",             # grounded, shares "The Pro ... has"
               "The Pro kettle has five preset temperatures: 40, 70, 80, 90 and 100 °C [1]."]
    cc = check_copying(answers, [EX] * 4, [KETTLE] * 4, ids=list("abcd"))
    assert [r["copied"] for r in cc.rows] == [True, True, False, False]
    assert cc.rate == 0.5 and cc.checked == 4 and [r["id"] for r in cc.flagged] == ["a", "b"]
    assert cc.flagged[0]["example"]["answer"] == EX[0]["answer"] and "9" in cc.flagged[0]["from_example"]
    assert cc.rows[3]["support"] == 1.0
    # the same sentence is no copy when the passages say it
    assert check_copying([EX[0]["answer"]], [EX], [["The Pro Long-Slot Toaster has 9 browning levels."]]).flagged == []


def test_copy_check_bad_input():
    with pytest.raises(ValueError, match="must have the same length"):
        check_copying(["a", "b"], [EX], [KETTLE, KETTLE])
    with pytest.raises(TypeError, match=r"answers\[1\] must be a str, got int"):
        check_copying(["a", 3], [EX, EX], [KETTLE, KETTLE])
    with pytest.raises(ValueError, match=r"min_copy must be in \(0, 1\]"):
        check_copying(["a"], [EX], [KETTLE], min_copy=1.5)
    cc = check_copying(["I don't know.", "", "x" * 200_000], [EX, EX, []], [KETTLE, [], []])
    assert cc.checked == 0 and math.isnan(cc.rate)


class Copier:
    "Repeats the first example answer the prompt shows; with none, the first sentence of passage [1]."

    def generate(self, messages, **kw):
        shown = [m["content"] for m in messages if m["role"] == "assistant"]
        text = shown[0] if shown else messages[-1]["content"].split(">>>\n", 1)[-1].split(".")[0] + " [1]."
        return Generation(text, "stop", 50 * len(messages), len(text.split()), 0.0, "copier")


@pytest.fixture(scope="module")
def pipe():
    store = VectorStore()
    store.add(["paris", "kettle", "warranty"],
              ["The Paris store is open Monday to Saturday from 10:00 to 19:30. It is closed on Sunday.", KETTLE[0],
               "Pro line appliances have a 3 year warranty."], [{"title": t} for t in ("Stores", "Kettles", "Warranty")])
    return RAGPipeline(store, Copier(), k=1, retries=0,
                       policy={"extends": "default", "output": {"groundedness": {"fallback": "answer"}}})


SUITE = [{"id": "hours", "input": "When is the Paris store open?", "references": "Monday to Saturday, 10:00 to 19:30."},
         {"id": "kettle", "input": "Which temperatures can the Pro kettle heat to?", "references": "40, 70, 80, 90 and 100 °C."},
         {"id": "warranty", "input": "How long is the warranty of Pro appliances?", "references": "3 years."}]


def test_compare_shots_on_a_tiny_pipeline(pipe, tmp_path):
    cmp = compare_shots(pipe, SUITE, EX, ks=[1, 2], n_resamples=200)
    assert list(cmp.settings) == ["0-shot", "fixed-1", "fixed-2", "similar-1", "similar-2"]
    assert cmp.metrics == DEFAULT_METRICS and cmp.copies["fixed-1"].rate == 1.0
    assert cmp.settings["0-shot"]["k"] == 0 and cmp.settings["similar-2"] == {**cmp.settings["similar-2"], "k": 2}
    assert "0-shot" not in cmp.copies and cmp.results["0-shot"].aggregates["token_f1"]["mean"] > 0.3
    p = cmp.paired["fixed-1"]["token_f1"]
    assert p.delta < 0 and p.n == 3   # copying an example costs accuracy
    assert cmp.paired["fixed-2"]["completion_tokens"] is not None
    t = cmp.table
    assert set(t.setting) == set(cmp.settings) and (t.metric == "copy_rate").sum() == 4
    row = t[(t.setting == "fixed-1") & (t.metric == "token_f1")].iloc[0]
    assert row.delta == pytest.approx(p.delta) and row.delta_low <= row.delta <= row.delta_high
    d = json.loads(json.dumps(cmp.to_dict(), allow_nan=False))
    assert d["copies"]["similar-1"]["flagged"][0]["example"]["question"] in {e["question"] for e in EX}
    assert "| fixed-1 |" in cmp._repr_markdown_()
    assert pipe.prompt.shots is None   # compare_shots works on copies


def test_compare_shots_logs_to_a_run(pipe, tmp_path):
    from llmops_nb.core import load_settings
    from llmops_nb.runs import start_run
    cmp = compare_shots(pipe, SUITE, EX, ks=[1], selects=["fixed"], metrics=["token_f1"], n_resamples=200)
    with start_run("fewshot-test", {}, settings=load_settings(home=tmp_path)) as run:
        out = cmp.log_to(run)
    assert run.metrics["fewshot/fixed-1/copy_rate"] == 1.0 and "fewshot/fixed-1/delta_token_f1" in run.metrics
    assert json.loads((out / "fewshot.json").read_text())["settings"]["fixed-1"]["k"] == 1
    assert (out / "0-shot" / "eval_result.json").is_file()
    with pytest.raises(TypeError, match="run must be a llmops_nb.runs.Run"):
        cmp.log_to(object())


def test_compare_shots_bad_input(pipe, tmp_path):
    with pytest.raises(ValueError, match="ask a question of the suite"):
        compare_shots(pipe, SUITE, [*EX, {"question": "when is the paris store  open?", "answer": "x"}], ks=[1])
    with pytest.raises(ValueError, match="ks must be a non-empty list"):
        compare_shots(pipe, SUITE, EX, ks=[])
    with pytest.raises(ValueError, match="ks must be a non-empty list"):
        compare_shots(pipe, SUITE, EX, ks=2)
    with pytest.raises(TypeError, match="pipeline must be a RAGPipeline"):
        compare_shots(lambda q: q, SUITE, EX)
    bad = tmp_path / "ex.jsonl"
    bad.write_text(json.dumps(EX[0]) + "\nnot json\n")
    with pytest.raises(Exception, match=r"ex\.jsonl:2: not valid JSON"):
        compare_shots(pipe, SUITE, bad, ks=[1])
    with pytest.raises(Exception, match="k=3 but the example set has only 2"):
        compare_shots(pipe, SUITE, EX, ks=[3])
