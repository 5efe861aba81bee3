"Tool cases in suites through the installed package: the fields, the three tool metrics with intervals, the packaged order suite checked against the orders database, and the accuracies in the lifecycle summary."
import json, re
import pytest
from llmops_nb.corpus import sample_dir
from llmops_nb.generate import Generation
from llmops_nb.lifecycle import format_summary, summarize
from llmops_nb.pipeline import RAGPipeline
from llmops_nb.retrieval import VectorStore
from llmops_nb.runs import read_run, start_run
from llmops_nb.suites import SuiteError, load_suite, run_suite
from llmops_nb.tools import ToolCall, order_tools, sample_orders_db

ORDERS = sample_dir() / "eval" / "orders.yaml"


@pytest.fixture(scope="module")
def orders(tmp_path_factory):
    return order_tools(sample_orders_db(tmp_path_factory.mktemp("db") / "orders.sqlite"))


def test_the_packaged_order_suite_agrees_with_the_orders_database(orders):
    suite = load_suite(ORDERS)
    assert len(suite) >= 20 and {c.meta["expected_tool"] for c in suite} == {"order_status", "product_price", None}
    firsts = [c.meta["expected_tool"] for c in suite][:12]                  # a tool_limit of 12 stays balanced
    assert all(firsts.count(t) == 4 for t in ("order_status", "product_price", None))
    for c in suite:
        if c.meta["expected_tool"] is None:
            continue
        r = orders.run(ToolCall(c.meta["expected_tool"], c.meta["expected_args"]))
        assert r.ok, (c.id, r.error)
        for fact in c.meta.get("facts", []):
            assert fact.casefold() in r.text().casefold(), (c.id, fact, r.text())
    assert not orders.run(ToolCall("order_status", suite["status-unknown-order"].meta["expected_args"])).rows


class Reads:
    "Answers with the first line of a tool passage it is shown (citing it), else with a fixed document answer."
    def info(self): return {"backend": "scripted", "model": "scripted-1", "model_digest": "0" * 64}
    def generate(self, msgs, **kw):
        prompt = json.loads(json.dumps(msgs))[-1]["content"]
        m = re.search(r"\[(\d)\][^\n]*\n?(order_status|product_price)\(([^)]*)\):\n([^\n]*)", prompt)
        text = f"{m.group(4)} [{m.group(1)}]" if m else "Returns are accepted within 30 days [1]."
        return Generation(text, "stop", 10, len(text.split()), 0.0, "scripted-1")


def test_tool_metrics_through_a_pipeline_with_tools(orders):
    kb = VectorStore()
    kb.add(["returns#0"], ["Returns are accepted within 30 days of delivery."], [{"title": "Returns"}])
    rag = RAGPipeline(kb, Reads(), tools=orders, k=1, policy={"extends": "default", "output": {"groundedness": None}})
    suite = load_suite(ORDERS).select(ids=["status-10022", "price-sku-kt300p", "doc-return-window", "status-unknown-order"])
    res = run_suite(rag, suite, seed=0, n_resamples=200)
    assert {"tool_choice_accuracy", "tool_args_accuracy", "answer_correctness"} <= set(res.metrics)
    by = {r["id"]: r for r in res.cases}
    assert by["status-10022"]["tool_calls"][0] == {"name": "order_status", "arguments": {"order_id": "ORD-10022"}, "ok": True, "error": None}
    assert by["doc-return-window"]["tool_calls"] == [] and by["doc-return-window"]["tool_choice_accuracy"] == 1.0
    assert res.aggregates["tool_choice_accuracy"]["mean"] == 1.0 and res.aggregates["tool_args_accuracy"]["n"] == 3
    assert by["status-10022"]["answer_correctness"] == 1.0 and by["price-sku-kt300p"]["answer_correctness"] == 1.0
    a = res.aggregates["answer_correctness"]
    assert a["n"] == 3 and a["low"] <= a["mean"] <= a["high"]


def test_tool_metrics_of_any_system_and_bad_fields(tmp_path):
    cases = [{"id": "a", "input": "Where is ORD-10001?", "expected_tool": "order_status", "expected_args": {"order_id": "ORD-10001"}, "facts": ["delivered"]},
             {"id": "b", "input": "Return window?", "expected_tool": None, "facts": "30 days"}]
    said = {"a": {"text": "It was delivered.", "tool_calls": [{"name": "order_status", "arguments": {"order_id": "ORD-10002"}}]},
            "b": {"text": "Sorry.", "tool_calls": [{"name": "order_status", "arguments": {}}]}}
    res = run_suite(lambda q: said["a" if "ORD" in q else "b"], cases, n_resamples=100)
    got = {r["id"]: (r["tool_choice_accuracy"], r.get("tool_args_accuracy"), r["answer_correctness"]) for r in res.cases}
    assert got["a"] == (1.0, 0.0, 1.0) and got["b"][0] == 0.0 and got["b"][2] == 0.0
    p = tmp_path / "bad.yaml"
    p.write_text("cases:\n  - input: q\n    expected_tool: [order_status]\n")
    with pytest.raises(SuiteError, match=r"bad.yaml:2: case 0: field 'expected_tool'"): load_suite(p)
    p.write_text("cases:\n  - input: q\n    expected_tool: order_status\n    expected_args: ORD-1\n")
    with pytest.raises(SuiteError, match="expected_args"): load_suite(p)


def test_the_lifecycle_summary_shows_the_tool_accuracies(home):
    from llmops_nb.core import load_settings, write_json
    agg = lambda m: {"mean": m, "low": m - 0.1, "high": min(m + 0.1, 1.0), "n": 24, "std": 0.3}
    with start_run("evaluate", settings=load_settings(), tracker="none") as ev:
        write_json(ev.dir / "eval" / "eval_result.json", {"aggregates": {"token_f1": agg(0.4)}})
        write_json(ev.dir / "eval_tools" / "eval_result.json", {"suite": "kestrel-orders", "meta": {"tools": {"source": "orders"}},
                   "aggregates": {"tool_choice_accuracy": agg(0.9), "tool_args_accuracy": agg(0.8), "answer_correctness": agg(0.5)}})
    rows = [r for r in summarize({"evaluate": read_run(ev.dir)}) if r["item"].startswith("tools:")]
    assert [(r["item"], r["value"]) for r in rows] == [("tools: tool_choice_accuracy", "0.900 [0.800, 1.000]"),
                                                       ("tools: tool_args_accuracy", "0.800 [0.700, 0.900]"),
                                                       ("tools: answer_correctness", "0.500 [0.400, 0.600]")]
    assert "24 cases of suite kestrel-orders, tools orders" in rows[0]["detail"] and "tools: tool_choice_accuracy" in format_summary(rows)
