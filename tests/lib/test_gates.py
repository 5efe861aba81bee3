"Gates: paired tests against scipy, A/A calibration, power, direction, rules, verdicts and `llmops eval gate` exit codes."
import json, math, os, subprocess, warnings
import numpy as np
import pytest
from scipy import stats
from conftest import LLMOPS
from llmops_nb.cli import main
from llmops_nb.core import ConfigError
from llmops_nb.gates import (Comparison, GateVerdict, compare, default_rules, gate, load_rules, mcnemar, paired_bootstrap)
from llmops_nb.suites import EvalResult

METRICS = ["exact_match", "token_f1", "latency_ms"]


def result(em, f1, ms, ids=None, digest="suite-1", inputs=None) -> EvalResult:
    "An EvalResult with per-case exact match, token F1 and latency (aggregates: plain means, NaN intervals)."
    ids = ids or [f"q{i}" for i in range(len(em))]
    cases = [{"id": i, "input": (inputs or {}).get(i, f"question {i}"), "exact_match": float(e), "token_f1": float(f), "latency_ms": float(l)}
             for i, e, f, l in zip(ids, em, f1, ms)]
    aggs = {m: {"mean": float(np.nanmean([c[m] for c in cases])), "low": math.nan, "high": math.nan, "n": len(cases), "std": 0.0} for m in METRICS}
    return EvalResult("demo", digest, list(METRICS), cases, aggs, {"cases": len(cases), "latency_p95_ms": float(np.percentile(ms, 95))}, {})


def system(seed: int, n: int = 200, em_drop: float = 0.0, f1_drop: float = 0.0, slow: float = 1.0):
    "One run of a system on a suite whose cases differ in difficulty (fixed by seed 0); `seed` is the run's own noise."
    case = np.random.default_rng(0)
    p, f1_mean = case.beta(2, 2, n), case.beta(2, 2, n)
    r = np.random.default_rng(1000 + seed)
    em = (r.random(n) < np.clip(p - em_drop, 0, 1)).astype(float)
    m = np.clip(f1_mean - f1_drop, 0.01, 0.99)
    f1 = r.beta(m * 10, (1 - m) * 10)
    ms = r.gamma(4, 250, n) * slow
    return result(em, f1, ms)


NO_REG = {"rules": [{"metric": "exact_match", "no_regression": True}, {"metric": "token_f1", "no_regression": True}]}


# paired tests against references
def test_mcnemar_matches_scipy_binomtest_and_chi2_on_random_tables():
    rng = np.random.default_rng(7)
    for _ in range(100):
        n11, n10, n01, n00 = rng.integers(0, 40, 4)
        a = [1] * n11 + [1] * n10 + [0] * n01 + [0] * n00
        b = [1] * n11 + [0] * n10 + [1] * n01 + [0] * n00
        if not a: continue
        m = n10 + n01
        ex = mcnemar(a, b, exact=True)
        assert ex.p_value == pytest.approx(stats.binomtest(int(n10), int(m), 0.5).pvalue if m else 1.0, abs=1e-10)
        ch = mcnemar(a, b, exact=False)
        if m: assert ch.p_value == pytest.approx(stats.chi2.sf(max(abs(n10 - n01) - 1, 0) ** 2 / m, 1), abs=1e-12)
        auto = mcnemar(a, b)
        assert auto.test == ("mcnemar-exact" if m < 25 else "mcnemar-chi2")
        assert auto.delta == pytest.approx((n01 - n10) / len(a))
        assert -1 <= auto.low <= auto.delta <= auto.high <= 1


def test_paired_bootstrap_agrees_with_t_interval_and_is_reproducible():
    rng = np.random.default_rng(3)
    a = rng.beta(2, 3, 300)
    b = np.clip(a + rng.normal(0.03, 0.1, 300), 0, 1)
    t = paired_bootstrap(a, b, n_resamples=4000, seed=1)
    d = b - a
    half = stats.t.ppf(0.975, 299) * d.std(ddof=1) / np.sqrt(300)
    assert t.delta == pytest.approx(d.mean())
    assert t.low == pytest.approx(d.mean() - half, abs=0.003) and t.high == pytest.approx(d.mean() + half, abs=0.003)
    assert t.p_value == pytest.approx(stats.ttest_rel(b, a).pvalue, abs=0.01)
    assert paired_bootstrap(a, b, n_resamples=4000, seed=1) == t


# calibration and power of the gate
def test_aa_false_alarm_rate_is_near_alpha():
    "Two runs of the same system: the no_regression gate fails in about alpha of the comparisons (one-sided test)."
    seeds, fails, raw = 200, 0, 0
    for s in range(seeds):
        a, b = system(2 * s), system(2 * s + 1)
        fails += not gate(b, NO_REG, baseline=a, n_resamples=200, seed=s).passed
        raw += np.mean([c["exact_match"] for c in b.cases]) < np.mean([c["exact_match"] for c in a.cases]) - 0.01
    # two rules at 0.05 each: at most ~0.1 expected
    assert fails / seeds <= 2 * 0.1, fails / seeds
    assert raw / seeds > 2 * fails / seeds          # a raw 1-point threshold on the mean raises far more false alarms


def test_clear_degradation_is_detected():
    hits = sum(not gate(system(2 * s + 1, em_drop=0.15, f1_drop=0.08), NO_REG, baseline=system(2 * s), n_resamples=500).passed for s in range(10))
    assert hits == 10
    v = gate(system(1, em_drop=0.15, f1_drop=0.08), NO_REG, baseline=system(0), n_resamples=500)
    assert [c["status"] for c in v.checks] == ["fail", "fail"]
    assert "significant regression" in v.checks[0]["detail"]


def test_direction_latency_increase_is_a_regression():
    base, slow, fast = system(0), system(1, slow=1.5), system(1, slow=0.6)
    c = compare(base, slow, n_resamples=1000)
    row = c.row("latency_ms")
    assert row["delta"] > 0 and row["regression"] and not row["improvement"] and row["higher_is_better"] is False
    assert compare(base, fast, n_resamples=1000).row("latency_ms")["improvement"]
    rules = {"rules": [{"metric": "latency_ms", "no_regression": True}]}
    assert not gate(slow, rules, baseline=base, n_resamples=1000).passed
    assert gate(fast, rules, baseline=base, n_resamples=1000).passed
    assert gate(slow, {"rules": [{"metric": "latency_ms", "no_regression": True, "margin": "60%"}]}, baseline=base, n_resamples=1000).passed


def test_thresholds_margins_and_verdict_outputs(tmp_path):
    a, b = system(0), system(1)
    c = compare(a, b, n_resamples=1000)
    v = gate(c, {"rules": [{"metric": "token_f1", "min": 0.3}, {"metric": "token_f1", "max": 0.1},
                           {"corpus": "latency_p95_ms", "max": 1e9}, {"metric": "exact_match", "no_regression": True, "margin": 0.02}]})
    assert [x["status"] for x in v.checks] == ["pass", "fail", "pass", "pass"]
    assert isinstance(v, GateVerdict) and not v and len(v.failures) == 1
    text = str(v)
    assert text.startswith("GATE FAILED") and "token_f1 mean <= 0.1" in text
    assert "<table" in v._repr_html_()
    d = json.loads(json.dumps(v.to_dict()))
    assert d["passed"] is False and d["checks"][1]["rule"] == 2
    back = Comparison.load(c.save(tmp_path / "cmp.json"))
    assert back.to_dict() == c.to_dict() and back.table.loc["token_f1", "n"] == 200


# bad input
def test_different_case_sets_name_the_ids():
    a = system(0)
    b = result([1] * 199, [0.5] * 199, [100] * 199, ids=[f"q{i}" for i in range(198)] + ["zz-new"])
    with pytest.raises(ValueError, match=r"lacks 2 of the baseline's 200 cases \(q198, q199\).*1 cases the baseline lacks \(zz-new\)"):
        compare(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = compare(a, b, allow_partial=True, n_resamples=200)
    assert c.cases == 198 and c.dropped["extra"] == ["zz-new"]
    changed = result([1] * 200, [0.5] * 200, [100] * 200, inputs={"q5": "an edited question"})
    with pytest.raises(ValueError, match=r"same id but a different input.*\(q5\)"):
        compare(a, changed)
    with pytest.warns(UserWarning, match="suite digests differ"):
        compare(a, result([1] * 200, [0.5] * 200, [100] * 200, digest="suite-2"), n_resamples=200)


def test_paired_input_errors():
    with pytest.raises(ValueError, match="a has 3 values, b has 2"): paired_bootstrap([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="empty"): mcnemar([], [])
    with pytest.raises(ValueError, match=r"b\[1\] is nan"): paired_bootstrap([1, 2], [1, float("nan")])
    with pytest.raises(TypeError, match=r"a\[0\]: expected a number, got str"): paired_bootstrap(["x", 1], [1, 2])
    with pytest.raises(TypeError, match="expected a sequence of numbers, got bytes"): mcnemar(b"\x00\x01", [0, 1])
    with pytest.raises(ValueError, match="0/1 outcomes"): mcnemar([0, 0.5], [1, 1])
    with pytest.raises(ValueError, match="alpha must be"): compare(system(0), system(1), alpha=0.9)
    nan_f1 = system(1); [c.update(token_f1=math.nan) for c in nan_f1.cases[:50]]
    assert compare(system(0), nan_f1, metrics=["token_f1"], n_resamples=200).row("token_f1")["n"] == 150
    bad = system(1); bad.cases[7]["token_f1"] = "0.5"
    with pytest.raises(ValueError, match="candidate case 'q7': token_f1 is str"): compare(system(0), bad)
    with pytest.raises(ValueError, match="compares with a baseline"): gate(system(0), NO_REG)


def test_rules_errors_name_file_line_rule_and_field(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text("alpha: 0.05\nrules:\n  - {metric: token_f1, min: 0.3}\n  - {metric: latency_ms, max: 5000, on: mean}\n  - {metric: token_f1, mni: 0.3}\n")
    with pytest.raises(ConfigError, match=r"rules.yaml:5: rule 3: unknown field 'mni'"): load_rules(f)
    f.write_text("rules:\n  - {metric: tokn_f1, min: 0.3}\n")
    with pytest.raises(ConfigError, match=r"rules.yaml:2: rule 1: field 'metric': unknown metric 'tokn_f1'.*known: exact_match, token_f1"): load_rules(f)
    f.write_text("rules:\n  - metric: token_f1\n    min: high\n")
    with pytest.raises(ConfigError, match=r"rules.yaml:2: rule 1: field 'min' must be a number, got str 'high'"): load_rules(f)
    f.write_text("rules:\n  - {metric: token_f1, min: 0.3\n")
    with pytest.raises(ConfigError, match=r"rules.yaml:3:\d+: invalid YAML"): load_rules(f)
    f.write_bytes(os.urandom(2048))
    with pytest.raises(ConfigError): load_rules(f)
    f.write_text("rules:\n" + "  - {metric: token_f1, min: 0.3}\n" * 40000)          # ~1.3 MB: refused at once, no parse
    with pytest.raises(ConfigError, match="far too large for a rules file"): load_rules(f)
    f.write_text("rules:\n" + "  - {metric: token_f1, min: 0.3}\n" * 300)
    assert len(load_rules(f)) == 300
    for d, msg in [({"rules": [{"metric": "token_f1", "no_regression": True, "margin": -1}]}, "'margin' must be >= 0"),
                   ({"rules": [{"metric": "token_f1"}]}, "needs exactly one check"),
                   ({"rules": [{"metric": "token_f1", "min": 1}], "extra": 1}, "unknown top-level field 'extra'"),
                   ({"rules": "token_f1"}, "'rules' must be a non-empty list")]:
        with pytest.raises(ConfigError, match=msg): load_rules(d)
    with pytest.raises(FileNotFoundError): load_rules(tmp_path / "missing.yaml")


def test_absent_metric_fails_unless_optional_and_default_rules_load():
    b = system(1)
    v = gate(b, {"rules": [{"metric": "groundedness", "min": 0.5}]})
    assert not v.passed and "groundedness is not in the result" in v.checks[0]["detail"]
    v = gate(b, {"rules": [{"metric": "groundedness", "min": 0.5, "optional": True}, {"metric": "token_f1", "min": 0.1}]})
    assert v.passed and [c["status"] for c in v.checks] == ["skip", "pass"]
    rules = load_rules(default_rules())
    assert rules.correction == "bonferroni" and all(r.optional for r in rules)
    assert gate(system(1), rules, baseline=system(0), n_resamples=500).passed
    assert not gate(system(1, em_drop=0.2), rules, baseline=system(0), n_resamples=500).passed


# the command line
@pytest.fixture
def saved(tmp_path):
    "Saved results: a baseline, an equal run, a degraded run, and a damaged copy."
    d = {}
    for name, r in [("base", system(0)), ("same", system(1)), ("worse", system(1, em_drop=0.2, f1_drop=0.1)),
                    ("fewer", result([1] * 10, [0.5] * 10, [1] * 10))]:
        d[name] = r.save(tmp_path / name)
    damaged = system(1).save(tmp_path / "damaged")
    (damaged / "cases.jsonl").write_text('{"id": "q0"}\n')
    d["damaged"] = damaged
    (tmp_path / "rules.yaml").write_text("rules:\n  - {metric: token_f1, no_regression: true}\n  - {metric: exact_match, no_regression: true}\n")
    (tmp_path / "bad_rules.yaml").write_text("rules:\n  - {metric: token_f1, no_regresion: true}\n")
    return tmp_path, d


def test_cli_gate_exit_codes(saved, home, capsys):
    tmp, d = saved
    rules = str(tmp / "rules.yaml")
    args = ["--rules", rules, "--resamples", "500"]
    assert main(["eval", "gate", str(d["base"]), str(d["same"]), *args]) == 0
    assert "GATE PASSED" in capsys.readouterr().out
    out = tmp / "verdict.json"
    assert main(["eval", "gate", str(d["base"]), str(d["worse"]), *args, "--json", "--out", str(out)]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["passed"] is False and json.loads(out.read_text())["checks"][0]["status"] == "fail"
    for bad in ([str(d["base"]), str(d["fewer"]), *args],                               # different cases
                [str(d["base"]), str(d["damaged"]), *args],                             # digest mismatch
                [str(d["base"]), str(tmp / "nowhere"), *args],                          # no such result
                [str(d["base"]), str(d["same"]), "--rules", str(tmp / "bad_rules.yaml")],  # malformed rules
                [str(d["base"]), str(d["same"]), *args, "--alpha", "3"]):               # bad alpha
        assert main(["eval", "gate", *bad]) == 2, bad
    err = capsys.readouterr().err
    assert "different case sets" in err and "no_regresion" in err and "rule 1" in err
    assert main(["eval", "gate", str(d["base"]), str(d["same"]), "--resamples", "500"]) == 0      # packaged default rules
    assert main(["eval", "show", str(d["base"])]) == 0 and "token_f1" in capsys.readouterr().out
    assert main(["eval", "compare", str(d["base"]), str(d["worse"]), "--resamples", "500"]) == 0
    assert "regression" in capsys.readouterr().out


def test_llmops_console_script_gate(saved, home):
    tmp, d = saved
    run = lambda *a: subprocess.run([LLMOPS, "eval", "gate", *a], capture_output=True, text=True, timeout=300)
    ok, bad = run(str(d["base"]), str(d["same"]), "--rules", str(tmp / "rules.yaml")), run(str(d["base"]), str(d["worse"]))
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 1 and "FAIL" in bad.stdout
    assert run(str(d["base"]), "no-such-run-id").returncode == 2
