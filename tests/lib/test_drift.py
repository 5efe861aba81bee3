"Drift statistics and the drift report: agreement with scipy, calibration under no drift, power under a shift, bad input."
import json, math
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from llmops_nb.drift import (DriftReport, EMBEDDING_TESTS, adjust, classifier_test, drift_report, js_divergence, ks, mmd, psi,
                             psi_noise, rate_change, topic_shift, when, windows)

G = np.random.default_rng


def traces(n, seed, answer_mean=400, block=0.02, ms_scale=200):
    g = G(seed)
    return [{"ts": 1_800_000_000 - i * 60.0, "question": None, "question_chars": float(q), "answer_chars": float(a), "total_ms": float(t),
             "completion_tokens": int(c), "input_action": "block" if b else "allow", "output_action": "allow", "status": s,
             "feedback_score": (float(f) if fb else None)}
            for i, (q, a, t, c, b, s, f, fb) in enumerate(zip(
                g.lognormal(4, .5, n).round(), g.normal(answer_mean, 80, n).round(), g.gamma(4, ms_scale, n), g.poisson(90, n),
                g.random(n) < block, g.choice(["answered", "idk", "refused", "error"], n, p=[.88, .07, .03, .02]),
                g.integers(0, 2, n), g.random(n) < .2))]


# ------------------------------------------------------------------ agreement with references
def test_ks_matches_scipy():
    for s in range(30):
        g = G(s)
        x, y = g.normal(0, 1, g.integers(30, 400)), g.normal(g.uniform(0, .4), 1.2, g.integers(30, 400))
        if s % 2: x, y = np.round(x * 2), np.round(y * 2)
        got, asymp, auto = ks(x, y), stats.ks_2samp(x, y, method="asymp"), stats.ks_2samp(x, y)
        assert got["statistic"] == pytest.approx(auto.statistic, abs=1e-12)
        assert got["p_value"] == pytest.approx(asymp.pvalue, abs=1e-9)
        assert abs(got["p_value"] - auto.pvalue) < 0.02


def test_psi_by_hand_and_thresholds():
    assert psi(range(100), [0] * 10, bins=2) == pytest.approx(.5 * math.log(2) + (1e-4 - .5) * math.log(1e-4 / .5))
    a = G(0).normal(100, 20, 5000)
    assert psi(a, G(1).normal(100, 20, 5000)) < 0.1
    assert psi(a, G(1).normal(130, 20, 5000)) >= 0.25


def test_js_and_holm():
    assert js_divergence([1, 1], [1, 1]) == 0 and js_divergence([1, 0], [0, 1]) == pytest.approx(1)
    assert adjust([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert adjust([0.3, 0.02], "bonferroni") == pytest.approx([0.6, 0.04])
    assert adjust([0.3, 0.02], None) == pytest.approx([0.3, 0.02])


# ------------------------------------------------------------------ calibration: no drift -> false alarms near alpha
def _rate(pvals, alpha=0.05): return float(np.mean(np.asarray(pvals) <= alpha))

def test_false_alarms_near_alpha():
    n = 100                                                    # seeds; binomial sd of the rate at 0.05 is 0.022
    assert 0.01 <= _rate([ks(*G(s).gamma(2, 1, (2, 60)))["p_value"] for s in range(n)]) <= 0.11
    assert 0.01 <= _rate([mmd(*G(s).normal(0, 1, (2, 30, 8)), permutations=99, seed=s)["p_value"] for s in range(n)]) <= 0.11
    assert 0.01 <= _rate([rate_change(*(G(s).random((2, 300)) < .1))["p_value"] for s in range(n)]) <= 0.11
    assert _rate([classifier_test(*G(s).normal(0, 1, (2, 40, 8)), seed=s)["p_value"] for s in range(n)]) <= 0.11
    assert _rate([topic_shift(*G(s).normal(0, 1, (2, 150, 8)), k=4, seed=s)["p_value"] for s in range(50)]) <= 0.1   # conservative
    vals = [psi(*G(s).normal(0, 1, (2, 400))) for s in range(n)]
    assert max(vals) < psi_noise(400, 400) and np.mean(np.array(vals) >= 0.1) <= 0.05


def test_report_no_false_alarm_across_seeds():
    alarms = sum(drift_report(traces(400, 2 * s), traces(400, 2 * s + 1)).drifted for s in range(20))
    assert alarms <= 3                                         # Holm keeps the family-wise rate <= alpha (0.05)


# ------------------------------------------------------------------ power: a real shift is found
def test_shift_detected():
    ref, cur = traces(2000, 1), traces(2000, 2, answer_mean=450, block=0.05, ms_scale=260)
    rep = drift_report(ref, cur)
    assert isinstance(rep, DriftReport) and rep.drifted
    assert {"answer_chars", "total_ms", "input_action_block_rate"} <= set(rep.features)
    assert "question_chars" not in rep.features and "completion_tokens" not in rep.features
    psi_rows = {r["feature"]: r for r in rep.rows if r["test"] == "psi"}
    assert psi_rows["question_chars"]["drifted"] is False
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["drifted"] and d["features"] == rep.features and len(d["rows"]) == len(rep.rows)
    assert "DRIFT in" in rep._repr_html_()


def test_report_accepts_dataframes_and_notes_missing_columns():
    ref, cur = pd.DataFrame(traces(300, 1)), pd.DataFrame(traces(300, 2))
    rep = drift_report(ref.drop(columns=["total_ms", "status"]), cur)
    assert any("total_ms: column missing" in n for n in rep.notes) and any("'status' missing" in n for n in rep.notes)
    assert "total_ms" not in set(rep.table.feature)
    assert any("no embedder" in n for n in rep.notes)
    bonf, holm = drift_report(ref, cur, correction="bonferroni"), drift_report(ref, cur, correction=None)
    assert all(r["p_adjusted"] == r["p_value"] for r in holm.rows if r["p_value"] is not None)
    k = sum(r["p_value"] is not None for r in bonf.rows)
    assert all(r["p_adjusted"] == pytest.approx(min(1, r["p_value"] * k)) for r in bonf.rows if r["p_value"] is not None)


SHIP = ["Where is my order {n}?", "How long does delivery to {c} take?", "Can I change the delivery address for order {n}?",
        "Do you ship to {c}?", "My parcel for order {n} has not arrived yet", "Which courier delivers to {c}?",
        "Can I track the package for order {n}?", "Is express shipping available to {c}?", "What does shipping to {c} cost?"]
BILL = ["Why was I charged twice for order {n}?", "How do I get a refund for order {n}?", "The invoice for order {n} shows the wrong amount",
        "When will my refund for order {n} reach my card?", "Can I pay by invoice from {c}?", "My card was declined for order {n}",
        "I was billed for a cancelled order {n}"]
CITIES = ["Berlin", "Vienna", "Toronto", "Seattle", "Lyon", "Oslo", "Madrid", "Leeds", "Porto"]


def _questions(templates, n, seed):
    g = G(seed)
    return [str(g.choice(templates)).format(n=g.integers(1000, 9999), c=g.choice(CITIES)) for _ in range(n)]


def test_new_topic_in_real_embeddings(home):
    from llmops_nb.embeddings import Embedder
    emb = Embedder()
    rows = lambda qs: [{"question": q, "question_chars": len(q)} for q in qs]
    old, same, new = _questions(SHIP, 60, 1), _questions(SHIP, 60, 2), _questions(SHIP, 30, 3) + _questions(BILL, 30, 4)
    shift = drift_report(rows(old), rows(new), embedder=emb, topics=4, tests=EMBEDDING_TESTS)
    assert {"question_embedding", "question_topics"} <= set(shift.features)
    topic = next(r for r in shift.rows if r["feature"] == "question_topics")
    assert topic["far_share"] > 0.2
    calm = drift_report(rows(old), rows(same), embedder=emb, topics=4, tests=EMBEDDING_TESTS)
    assert not calm.drifted
    from llmops_nb.core import load_settings
    cache = load_settings().path("cache_dir") / "embeddings"
    assert str(cache).startswith(str(home)) and any(cache.rglob("*")), "embeddings are cached under the settings cache dir"
    # a function works as an embedder too
    fn_rep = drift_report(rows(old), rows(new), embedder=lambda texts: emb.embed(texts), topics=4)
    assert "question_embedding" in fn_rep.features


# ------------------------------------------------------------------ windows
def test_windows_relative_and_absolute():
    now, day = 1_800_000_000, 86400
    df = pd.DataFrame({"ts": now - np.arange(0, 30 * day, 1800.0), "total_ms": 1.0})
    old, new = windows(df, now=now)
    assert len(old) == len(new) == 7 * 48 and old.ts.max() < now - 7 * day <= new.ts.min()
    a, b = windows(df, reference=("-30d", "-20d"), current=(now - 2 * day, "now"), now=now)
    assert len(a) == 10 * 48 - 1 and len(b) == 2 * 48    # the oldest row is at -30d + 30 min
    assert when("2027-01-15T08:00:00Z") == pd.Timestamp("2027-01-15T08:00:00Z").timestamp()
    rows = traces(100, 0)                                # list of dicts, one a minute, the newest at 1_800_000_000
    old, new = windows(rows, reference=("-1h", "-30m"), current=("-30m", "now"), now=1_800_000_000 + 30)
    assert len(old) == 30 and len(new) == 30


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call, err, msg", [
    (lambda: psi("12345", [1, 2]), TypeError, "reference: expected a sequence of numbers"),
    (lambda: psi([1, 2, 3], [b"\x00\xff", 2]), TypeError, "current: expected numbers, found bytes"),
    (lambda: ks([], [1, 2]), ValueError, "reference: needs at least 2"),
    (lambda: ks([1.0], [1, 2]), ValueError, "reference: needs at least 2"),
    (lambda: ks([np.nan, np.nan, 1], [1, 2]), ValueError, "reference: needs at least 2"),
    (lambda: ks({"a": 1}, [1, 2]), TypeError, "reference: expected a sequence"),
    (lambda: mmd(np.ones((5, 384)), np.ones((5, 8))), ValueError, "ref_emb has 384 dimensions and cur_emb 8"),
    (lambda: mmd(np.ones((1, 4)), np.ones((5, 4))), ValueError, "ref_emb: needs at least 2 rows"),
    (lambda: mmd(np.ones(4), np.ones((5, 4))), ValueError, "ref_emb: expected a 2-D array"),
    (lambda: mmd([[1, np.nan], [1, 2]], [[1, 2], [2, 1]]), ValueError, "ref_emb: row 0 has NaN"),
    (lambda: mmd([["a", "b"], ["c", "d"]], [[1, 2], [2, 1]]), TypeError, "ref_emb: expected a 2-D array of numbers"),
    (lambda: classifier_test(np.ones((3, 4)), np.ones((5, 4))), ValueError, "ref_emb: needs at least 4 rows"),
    (lambda: topic_shift(np.ones((10, 4)), np.ones((10, 4))), ValueError, "all reference embeddings are identical"),
    (lambda: rate_change([0, 1, 3], [1, 0]), ValueError, "ref_flags: expected True/False or 1/0"),
    (lambda: rate_change([0, 1], "01"), TypeError, "cur_flags: expected a sequence"),
    (lambda: drift_report([], traces(5, 0)), ValueError, "reference: the window is empty"),
    (lambda: drift_report(traces(5, 0), "rows"), TypeError, "current: expected trace rows"),
    (lambda: drift_report(traces(5, 0), [{"a": 1}, b"junk"]), TypeError, "current[1]: expected a dict"),
    (lambda: drift_report(traces(5, 0), traces(5, 1), alpha=5), ValueError, "alpha must be"),
    (lambda: drift_report(traces(5, 0), traces(5, 1), embeddings=np.ones((3, 3))), TypeError, "embeddings: expected a pair"),
    (lambda: windows(pd.DataFrame({"x": [1]})), ValueError, "no 'ts' column"),
    (lambda: windows(pd.DataFrame({"ts": [1]}), reference=("now", "-1d")), ValueError, "reference: start 'now' is not before"),
    (lambda: windows(pd.DataFrame({"ts": [1]}), current=("last tuesday", "now")), ValueError, "current start: cannot read"),
])
def test_bad_input(call, err, msg):
    with pytest.raises(err, match=msg.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        call()


def test_junk_and_huge_values_in_rows():
    ref = traces(200, 0)
    cur = traces(200, 1)
    cur[0]["total_ms"], cur[1]["answer_chars"], cur[2]["question_chars"] = "x" * 1_000_000, b"\x00\xff" * 10, float("nan")
    cur[3]["status"] = {"nested": [1, 2]}
    rep = drift_report(ref, cur)                         # junk in a numeric column is dropped, not a crash
    ks_rows = {r["feature"]: r for r in rep.rows if r["test"] == "ks"}
    assert ks_rows["total_ms"]["n_current"] == 199 and ks_rows["question_chars"]["n_current"] == 199
    one = drift_report([{"question_chars": 1, "status": "idk"}], [{"question_chars": 2, "status": "idk"}])
    assert not one.drifted and any("fewer than 2 values" in n for n in one.notes)
