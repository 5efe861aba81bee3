"Public behaviour of llmops_nb.report: sections, escaping, embedded figures, atomic save, sizes, bad input."
import base64, math, os, re, time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from llmops_nb.report import Report, report

EVIL = "<script>alert(1)</script>"
EVIL_ESC = "&lt;script&gt;alert(1)&lt;/script&gt;"


@dataclass
class FakeResult:
    "The documented shape of suites.EvalResult, nothing more."
    suite: str
    suite_digest: str
    metrics: list
    cases: list
    aggregates: dict = field(default_factory=dict)
    corpus: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


def make_result(n=40, seed=0, tags=(("warranty",), ("pricing",), ("returns", "policy"), ()), suite="faq", with_aggs=True):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        f1 = float(rng.beta(4, 2))
        cases.append({"id": f"q{i}", "input": f"Question {i}?", "output": f"Answer {i}.", "references": [f"Answer {i}", "alt"],
                      "tags": list(tags[i % len(tags)]) if tags else [], "status": "answered" if i % 5 else "refused", "error": None,
                      "exact_match": float(f1 > .75), "token_f1": f1, "latency_ms": float(rng.gamma(3, 40)), "refused": float(i % 5 == 0)})
    metrics = ["exact_match", "token_f1", "latency_ms", "refused"]
    aggs = {}
    if with_aggs:
        for m in metrics:
            x = np.array([c[m] for c in cases])
            aggs[m] = {"mean": float(x.mean()), "low": float(x.mean() - .05), "high": float(x.mean() + .05), "n": n, "std": float(x.std())}
    return FakeResult(suite, "ab" * 32, metrics, cases, aggs, {"cases": n, "bleu": 22.5, "refusal_rate": 0.2},
                      {"started": "2026-11-03T10:00:00Z", "duration_s": 3.2, "pipeline": {"type": "RAGPipeline"},
                       "generator": {"model": "tiny-llama", "model_digest": "cd" * 32}, "prompt_ref": "rag-answer@2"})


ROWS = [{"metric": "token_f1", "kind": "continuous", "test": "paired_bootstrap", "n": 40, "baseline": .7, "candidate": .6, "delta": -.1,
         "low": -.15, "high": -.05, "p_value": .001, "higher_is_better": True, "regression": True, "improvement": False},
        {"metric": "exact_match", "kind": "binary", "test": "mcnemar", "n": 40, "baseline": .3, "candidate": .32, "delta": .02,
         "low": -.04, "high": .08, "p_value": .7, "higher_is_better": True, "regression": False, "improvement": False},
        {"metric": "latency_ms", "kind": "continuous", "test": "paired_bootstrap", "n": 40, "baseline": 150.0, "candidate": 110.0,
         "delta": -40.0, "low": -50.0, "high": -30.0, "p_value": 0.0, "higher_is_better": False, "regression": False, "improvement": True}]


def comparison(rows=ROWS): return SimpleNamespace(rows=rows, table=None)
def verdict(passed=False, checks=None):
    checks = checks if checks is not None else [
        {"rule": 1, "metric": "token_f1", "check": "token_f1: no regression", "status": "fail", "detail": "delta -0.1 [-0.15, -0.05]"},
        {"rule": 2, "metric": "exact_match", "check": "exact_match mean >= 0.2", "status": "pass", "value": 0.32, "detail": ""},
        {"rule": 3, "metric": "hit", "check": "hit: no regression", "status": "skip", "detail": "hit is missing"}]
    return SimpleNamespace(passed=passed, checks=checks, alpha=0.05, notes=["Bonferroni correction: 2 checks at 0.025"])


def images(html):
    "Decoded embedded figures as (mime, bytes)."
    return [(m, base64.b64decode(b)) for m, b in re.findall(r'src="data:(image/[a-z+]+);base64,([A-Za-z0-9+/=]+)"', html)]


def test_sections_of_a_single_result():
    rep = report(make_result())
    assert isinstance(rep, Report)
    assert rep.sections == ["header", "aggregates", "distributions", "slices", "worst"]
    html = rep.html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>") and '<meta charset="utf-8">' in html
    for sec in rep.sections: assert f'<section id="{sec}">' in html
    assert "Gate verdict" not in html and "Baseline vs candidate" not in html
    for fact in ("<b>Suite</b> faq", "<b>Digest</b> abababababab", "<b>Cases</b> 40", "<b>Started</b> 2026-11-03T10:00:00Z",
                 "<b>Model</b> tiny-llama", "<b>Prompt</b> rag-answer@2", "<b>Pipeline</b> RAGPipeline"):
        assert fact in html, fact
    assert "<td>token_f1</td><td>continuous</td><td>higher</td>" in html           # aggregates table
    assert "<td>latency_ms</td><td>continuous</td><td>lower</td>" in html
    assert "<td>bleu</td><td>22.5</td>" in html                                      # corpus figures
    assert "<th>token_f1 mean [95% CI]</th>" in html and "<td>warranty</td>" in html  # slices table
    assert "cases with the lowest token_f1" in html
    assert rep.title == "Evaluation: faq"


def test_full_report_with_comparison_and_verdict():
    rep = report(make_result(), comparison=comparison(), verdict=verdict(), title="cand vs main")
    assert rep.sections == ["header", "verdict", "comparison", "aggregates", "distributions", "slices", "worst"]
    html = rep.html
    assert '<div class="banner fail">Gate FAILED: 1 passed, 1 failed, 1 skipped (alpha 0.05)</div>' in html
    assert '<tr class="regression"><td><span class="bad">✗ fail</span></td><td>1</td><td>token_f1</td>' in html
    assert "Note: Bonferroni correction" in html
    assert '<tr class="regression"><td>token_f1</td><td>paired_bootstrap</td><td>40</td><td>0.7</td><td>0.6</td><td>-0.1</td>' \
           '<td>[-0.15, -0.05]</td><td>0.001</td><td>regression</td></tr>' in html
    assert '<tr class="improvement"><td>latency_ms</td>' in html and "<td>&lt;0.001</td>" in html
    assert "no significant change" in html
    assert len(images(html)) == 3                                                    # forest, distributions, slices
    ok = report(make_result(), verdict=verdict(True, [{"name": "all fine", "passed": True}])).html    # a boolean `passed` works too
    assert '<div class="banner pass">Gate PASSED: 1 passed, 0 failed (alpha 0.05)</div>' in ok


def test_comparison_rows_as_plain_list_and_missing_values():
    rows = ROWS + [{"metric": "rougeL", "delta": None, "low": None, "high": None, "p_value": None}]
    html = report(make_result(), comparison=rows).html
    assert "<td>rougeL</td><td>-</td><td>-</td><td>-</td><td>-</td><td>-</td><td>-</td><td>-</td><td>no significant change</td>" in html


def test_figures_are_embedded_and_page_is_self_contained():
    html = report(make_result(), comparison=comparison()).html
    imgs = images(html)
    assert [m for m, _ in imgs] == ["image/svg+xml"] * 3
    for _, data in imgs:
        assert ET.fromstring(data).tag.endswith("svg")                              # well-formed SVG documents
    assert not re.search(r'(src|href)="(https?:)?//', html)                          # nothing fetched from anywhere
    assert "<script" not in html and "<link" not in html and "@import" not in html
    png = report(make_result(), fmt="png").html
    assert [m for m, _ in images(png)] == ["image/png"] * 2
    assert all(d.startswith(b"\x89PNG\r\n\x1a\n") for _, d in images(png))


def test_user_text_is_escaped_everywhere():
    r = make_result(n=6, suite=EVIL)
    r.cases[0].update(input=EVIL, output=EVIL, references=[EVIL], tags=[EVIL], status=EVIL, error=EVIL, token_f1=0.0)
    r.meta["pipeline"] = EVIL
    r.corpus[EVIL] = EVIL
    r.metrics.append(EVIL)                                                            # even a metric name
    for c in r.cases: c[EVIL] = 0.5
    v = verdict(checks=[{"name": EVIL, EVIL: EVIL, "status": "fail"}])
    v.notes = [EVIL]
    rows = [dict(ROWS[0], metric=EVIL, test=EVIL)]
    rep = report(r, comparison=rows, verdict=v, title=EVIL)                          # figures drawn with the hostile labels too
    html = rep.html
    assert "<script" not in html.lower() and EVIL_ESC in html
    worst = html.split('<section id="worst">')[1]
    assert worst.count(EVIL_ESC) >= 5                                                 # input, output, reference, status, error (+ tag)
    assert f"<title>{EVIL_ESC}</title>" in html and f"<h1>{EVIL_ESC}</h1>" in html
    assert "<script" not in rep._repr_html_().lower()
    assert len(images(html)) == 3


def test_repr_html_is_a_fragment_with_scoped_css():
    rep = report(make_result())
    frag = rep._repr_html_()
    assert frag.startswith('<div class="llmops-report"><style>') and "<html" not in frag and "<body" not in frag
    css = frag.split("<style>")[1].split("</style>")[0]
    selectors = [s.strip() for rule in css.split("}") if "{" in rule for s in rule.split("{")[0].split(",")]
    assert selectors and all(s.startswith(".llmops-report") for s in selectors)    # never restyles the notebook
    assert frag in rep.html
    assert "Report('Evaluation: faq'" in repr(rep) and len(repr(rep)) < 300


def test_save_writes_one_file_atomically(tmp_path, monkeypatch):
    rep = report(make_result())
    p = rep.save(tmp_path / "deep" / "er" / "report.html")
    assert p == tmp_path / "deep" / "er" / "report.html"
    assert p.read_text(encoding="utf-8") == rep.html
    assert os.listdir(p.parent) == ["report.html"]                                   # no temp file left behind
    assert rep.save(str(tmp_path)) == tmp_path / "report.html"                       # a folder: report.html inside
    # a failing write leaves the previous file as it was and no temp file
    old = p.read_text(encoding="utf-8")
    def boom(*a, **k): raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        report(make_result(seed=1), title="new").save(p)
    monkeypatch.undo()
    assert p.read_text(encoding="utf-8") == old and os.listdir(p.parent) == ["report.html"]


def test_tables_only():
    rep = report(make_result(), comparison=comparison(), fmt=None)
    html = rep.html
    assert not images(html) and rep.sections == ["header", "comparison", "aggregates", "distributions", "slices", "worst"]
    assert "<th>median</th>" in html and "<th>token_f1 mean [95% CI]</th>" in html and '<tr class="regression"><td>token_f1</td>' in html


def test_deterministic_output():
    a = report(make_result(n=10), comparison=comparison()).html
    b = report(make_result(n=10), comparison=comparison()).html
    assert a == b


def test_large_suite_stays_small_and_fast():
    r = make_result(n=2000, tags=tuple((f"tag{i}",) for i in range(60)))          # 60 tags: only the largest 20 shown
    t = time.perf_counter()
    rep = report(r, comparison=comparison(), verdict=verdict())
    html = rep.html
    elapsed = time.perf_counter() - t
    size = len(html.encode("utf-8"))
    assert size < 2_000_000, size
    assert elapsed < 20, elapsed                                                      # ~1.5 s here; generous for a shared machine
    assert "Showing the 20 largest of 60 tags." in html
    assert html.split('<section id="worst">')[1].count("<tr>") == 10 + 1          # header row + 10 worst cases


def test_all_nan_metrics_single_case_no_tags_missing_meta():
    r = FakeResult("s", "", ["token_f1", "rougeL"], [{"id": "only", "input": "hi", "token_f1": float("nan"), "rougeL": None}], {}, {}, {})
    html = report(r).html
    assert "No metric has a value to plot." in html and "No applicable case for: token_f1, rougeL." in html
    assert "No case has tags, so there are no slices." in html and "No case has a value for token_f1." in html
    assert "<b>Started</b> -" in html and "<b>Digest</b> -" in html and "No run metadata recorded." in html
    one = FakeResult("s", "d", ["token_f1"], [{"id": "only", "input": "hi", "output": "yo", "token_f1": 0.25}])
    html = report(one).html
    assert len(images(html)) == 1 and "<td>only</td><td>0.25</td>" in html
    # an object without corpus/meta attributes at all still reports
    bare = SimpleNamespace(suite="bare", metrics=["token_f1"], cases=[{"id": "a", "token_f1": 1.0}], aggregates=None)
    assert report(bare).sections == ["header", "aggregates", "distributions", "slices", "worst"]
    empty = FakeResult("empty", "d", [], [])
    assert "No metrics." in report(empty).html


def test_non_ascii_text_round_trips(tmp_path):
    r = make_result(n=8, tags=(("日本語",), ("ñandú",)))
    r.cases[0].update(input="¿Dónde está la garantía? 東京 🚀", output="Zwei Jahre – ça va", token_f1=0.0)
    p = report(r, metrics=["token_f1"], fmt="png").save(tmp_path / "r.html")   # figures with CJK labels render too
    text = p.read_text(encoding="utf-8")
    assert "¿Dónde está la garantía? 東京 🚀" in text and "Zwei Jahre – ça va" in text and "<td>日本語</td>" in text


def test_worst_cases_order_and_clipping():
    r = make_result(n=30)
    r.cases[3]["output"] = "x" * 5000
    r.cases[3]["token_f1"] = -1.0                                                     # the worst
    html = report(r, worst=3, max_chars=50, fmt=None).html.split('<section id="worst">')[1]
    assert html.count("<tr>") == 4 and html.index("<td>q3</td>") < html.index("</tbody>")
    assert "x" * 50 + "… (+4,950 chars)" in html and "x" * 51 not in html
    lat = report(r, sort_by="latency_ms", worst=2, fmt=None).html.split('<section id="worst">')[1]
    top = sorted(r.cases, key=lambda c: -c["latency_ms"])[:2]                         # lower is better: highest first
    assert "cases with the highest latency_ms (lower is better)" in lat
    assert lat.index(f"<td>{top[0]['id']}</td>") < lat.index(f"<td>{top[1]['id']}</td>")
    assert "worst" not in report(r, worst=0, fmt=None).sections                                   # worst=0: no such section


def test_junk_values_and_huge_text():
    r = make_result(n=10)
    r.cases[0].update(token_f1="0.5", exact_match=b"\x00\xff", input=b"\x00\x01binary\xff", output="\x00ctl\udcff" + "y" * 1_000_000)
    r.cases[1].update(token_f1=float("inf"), tags="single-tag-as-string")
    rep = report(r, fmt=None)
    html = rep.html
    assert len(html.encode("utf-8")) < 300_000                                        # the 1 MB output is clipped
    assert "\x00" not in html and "\udcff" not in html
    html.encode("utf-8")                                                              # writable as UTF-8
    assert "<td>single-tag-as-string</td>" in html


def test_bad_input_names_the_argument(tmp_path):
    r = make_result(n=5)
    with pytest.raises(TypeError, match="result: expected an EvalResult"): report({"cases": []})
    with pytest.raises(TypeError, match="result: expected an EvalResult"): report(None)
    with pytest.raises(TypeError, match=r"result.cases\[1\]"): report(FakeResult("s", "d", [], [{"id": "a"}, "oops"]))
    with pytest.raises(TypeError, match="result.cases"): report(FakeResult("s", "d", [], "not a list"))
    with pytest.raises(TypeError, match=r"result.metrics\[0\]"): report(FakeResult("s", "d", [3], []))
    with pytest.raises(TypeError, match="comparison"): report(r, comparison=42)
    with pytest.raises(TypeError, match=r"comparison.rows\[0\]"): report(r, comparison=SimpleNamespace(rows=["x"]))
    with pytest.raises(TypeError, match="verdict"): report(r, verdict=True)
    with pytest.raises(TypeError, match="title"): report(r, title=b"x")
    with pytest.raises(TypeError, match="metrics"): report(r, metrics="token_f1")
    with pytest.raises(ValueError, match="metrics.*nope"): report(r, metrics=["nope"])
    with pytest.raises(ValueError, match="sort_by"): report(r, sort_by="nope")
    with pytest.raises(TypeError, match="worst"): report(r, worst=2.5)
    with pytest.raises(ValueError, match="worst"): report(r, worst=-1)
    with pytest.raises(ValueError, match="max_chars"): report(r, max_chars=3)
    with pytest.raises(TypeError, match="max_tags"): report(r, max_tags=True)
    with pytest.raises(ValueError, match="fmt"): report(r, fmt="gif")
    with pytest.raises(TypeError, match="result: expected an EvalResult"): report(b"\x00\xff binary junk")
    with pytest.raises(TypeError, match="path"): report(r).save(None)


# --- with the real suites and gates modules --------------------------------------------------------------------
FAQ = {f"K{i}": (1 + i % 3, 20 + 5 * i) for i in range(12)}
ROWS_SUITE = [{"id": f"{p}-{kind}", "question": q, "answer": a, "tags": [kind]} for p, (years, price) in FAQ.items() for kind, q, a in
              (("warranty", f"How long is the warranty on the {p}?", f"{years} years"), ("pricing", f"How much does the {p} cost?", f"${price}"))]
TRUTH = {r["question"]: r["answer"] for r in ROWS_SUITE}


def _main_bot(q): return TRUTH[q]
def _cand_bot(q): return "90 days" if "warranty" in q and int(q.split("K")[1].rstrip("?")) % 2 == 0 else TRUTH[q]


@pytest.fixture(scope="module")
def real_runs():
    from llmops_nb.suites import load_suite, run_suite
    suite = load_suite(ROWS_SUITE, name="faq-real")
    metrics = ["exact_match", "token_f1", "rougeL", "latency_ms"]
    return run_suite(_main_bot, suite, metrics=metrics), run_suite(_cand_bot, suite, metrics=metrics)


def test_real_eval_result_comparison_and_gate(real_runs, tmp_path):
    from llmops_nb.gates import compare, default_rules, gate
    main, cand = real_runs
    comp = compare(main, cand)
    v = gate(comp, default_rules())
    rep = report(cand, comparison=comp, verdict=v)
    html = rep.html
    assert rep.sections == ["header", "verdict", "comparison", "aggregates", "distributions", "slices", "worst"]
    assert "Gate FAILED" in html and '<tr class="regression"><td>exact_match</td>' in html
    assert "<b>Suite</b> faq-real" in html and f"<b>Digest</b> {cand.suite_digest[:12]}" in html and "<b>Cases</b> 24" in html
    assert "<td>warranty</td>" in html and "<td>pricing</td>" in html                           # slices by tag
    worst = html.split('<section id="worst">')[1]
    assert worst.index("<td>K0-warranty</td>") < worst.index("</tbody>") and "90 days" in worst
    assert len(images(html)) == 3
    # a saved result folder is accepted in place of the object
    folder = cand.save(tmp_path / "cand")
    again = report(str(folder))
    assert again.sections == ["header", "aggregates", "distributions", "slices", "worst"] and "<b>Suite</b> faq-real" in again.html


def test_a_missing_result_folder_is_a_clear_error(home):
    with pytest.raises(FileNotFoundError, match="nope-not-here"):
        report(str(home / "nope-not-here"))


def test_a_failing_case_shows_its_error_message_in_the_worst_cases():
    from llmops_nb.suites import load_suite, run_suite
    def bot(q):
        if "K3" in q: raise RuntimeError("model server <gone>")
        return TRUTH[q]
    res = run_suite(bot, load_suite(ROWS_SUITE, name="faq-err"), metrics=["token_f1", "error"])
    worst = report(res, sort_by="token_f1").html.split('<section id="worst">')[1]
    assert "model server &lt;gone&gt;" in worst and "<td>error</td>" in worst
