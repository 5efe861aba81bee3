"The evaluate runbook through `llmops run`: suite, metrics, report and gate in the run record, lineage, baseline comparison, bad input."
import json, subprocess
from pathlib import Path
import pytest
from conftest import LLMOPS, llmops_run, run_dir_of, job_env
from llmops_nb.core import read_json
from llmops_nb.runs import read_run
from llmops_nb.suites import load_result

SUITE = """name: tiny-smoke
cases:
  - {id: returns, question: "How many days do I have to return a product?", answer: 30 days, tags: [returns], doc_ids: [policies/returns.md]}
  - {id: shipping, question: "How long does standard shipping take?", answer: 3 to 5 working days, tags: [shipping]}
  - {id: ceo, question: "What is the name of the CEO's dog?", answer: "I don't know", answerable: false, tags: [unanswerable]}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model):
    home = tmp_path_factory.mktemp("home")
    (home / "suite.yaml").write_text(SUITE)
    return job_env(home, tmp_path_factory.mktemp("cache"))


def evaluate(env, tiny_model, *params):
    base = [("model", str(tiny_model)), ("adapter", "None"), ("suite", str(Path(env["LLMOPS_HOME"]) / "suite.yaml")), ("k", "1"),
            ("max_new_tokens", "8")]
    return llmops_run("evaluate", *base, *params, env=env, timeout=600)


@pytest.fixture(scope="module")
def first(env, tiny_model):
    out = evaluate(env, tiny_model, ("tool_suite", "orders"), ("tool_limit", "6"))   # and the order questions, with tools
    assert out.returncode == 0, out.stderr[-3000:]
    return read_run(run_dir_of(out))


def test_evaluate_writes_result_report_gate_and_lineage(first):
    rec = first
    assert rec.status == "completed"
    res = load_result(rec.dir)
    assert [c["id"] for c in res.cases] == ["returns", "shipping", "ceo"] and res.suite == "tiny-smoke"
    assert {"token_f1", "exact_match", "hit", "groundedness", "answer_relevance", "latency_ms", "correct_refusal"} <= set(res.metrics)
    assert all(c["status"] in ("answered", "idk", "refused", "blocked") for c in res.cases), [c["error_message"] for c in res.cases]
    m = rec.metrics
    assert 0 <= m["eval/token_f1"] <= 1 and m["eval/latency_ms"] > 0 and m["eval/corpus/cases"] == 3 and "gate/passed" in m
    gate = read_json(rec.dir / "gate.json")
    assert gate["passed"] == bool(m["gate/passed"]) and any(c["detail"] == "no baseline to compare with" for c in gate["checks"])
    html = (rec.dir / "report.html").read_text()
    assert "tiny-smoke" in html and "data:image/svg+xml;base64," in html
    lin = rec.lineage
    assert {"model", "suite", "prompt", "documents"} <= set(lin["inputs"]) and {"eval", "gate", "report"} <= set(lin["outputs"])
    assert lin["inputs"]["suite"]["digest"] == res.suite_digest
    assert res.meta["prompt"].startswith("rag@") and res.meta["policy"]


def test_the_order_suite_runs_with_tools_beside_the_main_result(first):
    tools = load_result(first.dir / "eval_tools")
    assert len(tools.cases) == 6 and {"tool_choice_accuracy", "tool_args_accuracy"} <= set(tools.metrics)
    assert [r["tool_calls"][0]["name"] if r["tool_calls"] else None for r in tools.cases] == \
        ["order_status", "product_price", None, "order_status", "product_price", None]      # the router's choices on this suite
    assert tools.aggregates["tool_choice_accuracy"]["mean"] == 1.0 and tools.meta["tools"]["source"] == "orders"
    assert first.metrics["eval_tools/tool_choice_accuracy"] == 1.0 and first.lineage["inputs"]["tool_suite"]["digest"] == tools.suite_digest
    release = read_json(first.dir / "release.json")
    assert "tools" not in release["spec"] and tools.meta["release"] != release["version"]  # the release measured above is unchanged
    assert not any(m.startswith("tool_") for m in load_result(first.dir).metrics)


def test_a_second_run_compares_with_the_first_as_baseline(env, tiny_model, first):
    out = evaluate(env, tiny_model, ("baseline", "latest"))
    assert out.returncode == 0, out.stderr[-3000:]
    rec = read_run(run_dir_of(out))
    comp = read_json(rec.dir / "comparison.json")
    rows = {r["metric"]: r for r in comp["rows"]}
    assert rows["token_f1"]["n"] == 3 and rows["token_f1"]["test"] == "bootstrap" and rows["hit"]["kind"] == "binary"
    assert rows["token_f1"]["delta"] == pytest.approx(0.0)       # same model, greedy decoding: the same answers
    assert first.id in rec.lineage["parents"] and "baseline" in rec.lineage["inputs"]
    gate = read_json(rec.dir / "gate.json")
    assert not any(c["detail"] == "no baseline to compare with" for c in gate["checks"])
    # the CLI gate reads the two runs by id and agrees with the runbook
    cli = subprocess.run([LLMOPS, "eval", "gate", first.id, rec.id, "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert cli.returncode == (0 if gate["passed"] else 1), cli.stderr
    assert json.loads(cli.stdout)["passed"] == gate["passed"]


def test_fail_on_gate_fails_the_run(env, tiny_model, tmp_path):
    rules = tmp_path / "strict.yaml"
    rules.write_text("rules:\n  - {metric: token_f1, min: 0.99}\n")
    out = evaluate(env, tiny_model, ("rules", str(rules)), ("fail_on_gate", "true"), ("metrics", "token_f1,error"))
    assert out.returncode == 1 and "gate failed" in out.stderr


@pytest.mark.parametrize("params, message", [
    ((("suite", "/no/such/suite.yaml"),), "suite.yaml"),
    ((("metrics", "token_f1,bogus_metric"),), "bogus_metric"),
    ((("baseline", "20990101-000000-000000"),), "not found"),
    ((("judge", "http://127.0.0.1:9/v1"),), "judge_model"),
    ((("tool_suite", "/no/such/orders.yaml"),), "orders.yaml"),
])
def test_bad_parameters_fail_before_any_model_work(env, tiny_model, params, message):
    out = evaluate(env, tiny_model, *params)
    assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]


def test_malformed_suite_names_the_line(env, tiny_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "ok?", "answer": "yes"}\n{"id": "b", "answer": "no question"}\n')
    out = llmops_run("evaluate", ("model", str(tiny_model)), ("adapter", "None"), ("suite", str(bad)), env=env, timeout=600)
    assert out.returncode != 0 and "bad.jsonl:2 (id 'b'): field 'input' is missing" in out.stderr, out.stderr[-2000:]
