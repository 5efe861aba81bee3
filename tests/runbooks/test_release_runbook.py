"The release and retrain runbooks through `llmops run`: registration with evidence, gated promotion, refusals, bad parameters."
import json
import pytest
from conftest import llmops_run, run_dir_of, job_env
from llmops_nb.core import Settings, write_json
from llmops_nb.gates import gate
from llmops_nb.pipeline import release_spec, spec_digest
from llmops_nb.prompts import PromptRegistry
from llmops_nb.releases import ReleaseRegistry
from llmops_nb.runs import read_run, start_run
from llmops_nb.suites import load_suite, run_suite

SUITE = load_suite([{"id": f"q{i}", "question": f"Warranty of model K{i}?", "answer": f"{1 + i % 3} years"} for i in range(20)], name="w")
TRUTH = {c.input: c.references[0] for c in SUITE}
RULES = {"rules": [{"metric": "exact_match", "min": 0.6}, {"metric": "exact_match", "no_regression": True, "optional": True}]}


@pytest.fixture
def env(home, tiny_model):
    return job_env(home)


def measured(settings, spec, knows: float, baseline=None) -> str:
    "An evaluate run record of `spec` as the evaluate runbook writes it (release.json, eval/, gate.json)."
    run = start_run("evaluate", {}, settings, tracker="none")
    res = run_suite(lambda q: TRUTH[q] if int(q.split("K")[1][:-1]) < knows * 20 else "no idea", SUITE, metrics=["exact_match"])
    res.save(run.dir / "eval"); write_json(run.dir / "release.json", {"digest": spec_digest(spec), "spec": spec})
    if baseline: run.add_input("baseline", digest="x", run_id=baseline)
    v = gate(res, RULES, baseline=read_run(baseline, settings.path("runs_dir")).dir / "eval" if baseline else None)
    write_json(run.dir / "gate.json", v.to_dict()); run.finish()
    return run.id


def test_release_registers_promotes_and_refuses(env, home, tiny_model):
    settings = Settings(home=home, tracker="none")
    prompts = PromptRegistry(home / "prompts")
    a = release_spec(str(tiny_model), index=None, registry=prompts, settings=settings, max_new_tokens=16)
    b = release_spec(str(tiny_model), index=None, registry=prompts, settings=settings, max_new_tokens=32)
    ea = measured(settings, a, 1.0)
    out = llmops_run("release", ("eval_run", ea), env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rec = read_run(run_dir_of(out))
    moved = json.loads((rec.dir / "release.json").read_text())
    reg = ReleaseRegistry(settings=settings)
    assert [m["alias"] for m in moved["moves"]] == ["staging", "production"] and reg.aliases()["production"] == spec_digest(a)[:12]
    assert rec.metrics["promoted"] == 1 and rec.lineage["inputs"]["evaluation"]["run_id"] == ea
    eb = measured(settings, b, 0.7, baseline=ea)                   # a significant regression against production
    out = llmops_run("release", ("eval_run", eb), ("fail_on_refusal", "true"), env=env, timeout=300)
    assert out.returncode == 1 and "refused" in out.stderr, out.stderr[-2000:]
    assert reg.aliases() == {"production": spec_digest(a)[:12], "staging": spec_digest(b)[:12]}     # staging moved, production did not
    out = llmops_run("release", ("eval_run", eb), ("force", "true"), env=env, timeout=300)
    assert out.returncode != 0 and "parameter 'force' must be false unless a reason is given" in out.stderr


@pytest.mark.parametrize("params, message", [
    ((("eval_run", ""),), "parameter 'eval_run' must be the evaluate run"),
    ((("eval_run", "20990101-000000-000000"),), "not found"),
])
def test_release_bad_parameters(env, params, message):
    out = llmops_run("release", *params, env=env, timeout=300)
    assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("params, message", [
    ((("store", "/no/such/traces.sqlite"),), "store: /no/such/traces.sqlite does not exist"),
    ((("max_steps", "0"),), "must be positive"),
])
def test_retrain_bad_parameters_fail_before_any_work(env, params, message):
    out = llmops_run("retrain", *params, env=env, timeout=300)
    assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]


def test_retrain_needs_a_production_release(env, home):
    from llmops_nb.tracestore import TraceStore
    TraceStore(home / "traces.sqlite").close()
    out = llmops_run("retrain", ("store", str(home / "traces.sqlite")), env=env, timeout=300)
    assert out.returncode != 0 and "no release or alias 'production'" in out.stderr, out.stderr[-2000:]
