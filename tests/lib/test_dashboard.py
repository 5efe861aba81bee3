"The monitoring dashboard: time buckets of a trace store, a self-contained HTML page, empty/one/100k-row windows, bad input."
import base64, random, re, sqlite3, time
import numpy as np
import pandas as pd
import pytest
from llmops_nb.tracestore import COLUMNS, TraceStore
from llmops_nb.drift import drift_report
from llmops_nb.alerts import check
from llmops_nb.dashboard import Dashboard, dashboard, timeseries

T0 = 1_800_000_000.0          # 2027-01-15 08:00 UTC: an hour boundary


def traffic(store, hours=6, slow_from=4, per_hour=60, seed=0):
    "Realistic rows, one a minute; from hour `slow_from` on: slower and often blocked."
    rng = random.Random(seed)
    for i in range(hours * per_hour):
        late = i >= slow_from * per_hour
        blocked = (late and rng.random() < 0.4) or rng.random() < 0.03
        status = "blocked" if blocked else "error" if rng.random() < 0.02 else "refused" if rng.random() < 0.05 else "answered"
        store.record({"trace_id": f"t{seed}-{i}", "ts": T0 + 3600 * i / per_hour, "status": status, "key_id": "team-a",
                      "input_action": "block" if blocked else "allow", "output_action": None if blocked else "allow",
                      "total_ms": rng.gauss(2400 if late else 800, 100), "steps_ms": {"retrieve": 12.0, "generate": 700.0},
                      "prompt_tokens": None if blocked else rng.randint(300, 500), "completion_tokens": None if blocked else rng.randint(20, 120),
                      "question": f"How do I reset my password ({i})?", "answer": None if blocked else "Use the reset link.",
                      "model": "tiny", "feedback_score": float(rng.random() < (0.5 if late else 0.9)) if i % 7 == 0 else None})
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return traffic(TraceStore(tmp_path_factory.mktemp("traces") / "traces.sqlite", price={"prompt": 0.15, "completion": 0.6}))


def test_timeseries_buckets_the_window(store):
    ts = timeseries(store, T0, T0 + 6 * 3600, bucket="1h")
    assert len(ts) == 6 and ts["requests"].tolist() == [60.0] * 6
    assert str(ts.index[0]) == "2027-01-15 08:00:00+00:00" and ts["ts"].iloc[1] - ts["ts"].iloc[0] == 3600
    assert ts["latency_p95"].iloc[-1] > 2 * ts["latency_p95"].iloc[0] and ts["latency_p50"].iloc[0] == pytest.approx(800, abs=60)
    assert ts["input_block_rate"].iloc[-1] > 0.2 > ts["input_block_rate"].iloc[0]
    agg = store.aggregates(T0, T0 + 6 * 3600)
    assert ts["cost_usd"].sum() == pytest.approx(agg["cost_usd"]) and ts["prompt_tokens"].sum() == agg["tokens"]["prompt"]
    assert ts["feedback_count"].sum() == agg["feedback"]["count"]
    assert (ts["feedback_mean"] * ts["feedback_count"]).sum() / ts["feedback_count"].sum() == pytest.approx(agg["feedback"]["score_mean"])
    # the same from a DataFrame of rows, and finer buckets with the empty ones kept
    pd.testing.assert_frame_equal(timeseries(store.frame(), T0, T0 + 6 * 3600), ts)
    q = timeseries(store, T0 - 3600, T0 + 3600, bucket="30m")
    assert q["requests"].tolist() == [0, 0, 30, 30] and q["latency_p50"].isna().tolist() == [True, True, False, False]


def test_dashboard_page_has_every_section_and_saves_atomically(store, tmp_path):
    rep = drift_report(store.frame(T0, T0 + 4 * 3600), store.frame(T0 + 4 * 3600, T0 + 6 * 3600))
    res = check(store, {"rules": [{"name": "slow", "metric": "latency_ms.p95", "window": "1h", "max": 2000},
                                  {"name": "errors", "metric": "error_rate", "window": "1h", "max": 0.5}]},
                now=T0 + 6 * 3600, notify=False, record=False)
    page = dashboard(store, T0, T0 + 6 * 3600, bucket="15m", drift=rep, alerts=res, split=T0 + 4 * 3600, title="Support bot")
    assert isinstance(page, Dashboard) and page.requests == 360
    assert page.sections == ["header", "traffic", "tokens", "rates", "feedback", "drift", "alerts", "aggregates"]
    html = page.html
    svgs = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert len(svgs) == 5 and all(base64.b64decode(s).lstrip().startswith(b"<?xml") for s in svgs)
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")     # nothing fetched from elsewhere
    assert "1 alert(s) fired of 2 rule(s)" in html and "drift in" in html and "total_ms" in html
    assert "latency_ms.p95" in html and ">reference<" in html and ">current<" in html      # aggregates per side of the split
    assert page._repr_html_() in html
    out = page.save(tmp_path / "dashboard.html")
    assert out.read_text(encoding="utf-8") == html and [p.name for p in tmp_path.iterdir()] == ["dashboard.html"]
    assert page.save(tmp_path).name == "dashboard.html"                                     # a folder: dashboard.html inside
    # drift.json / alerts.json forms redraw the same tables
    again = dashboard(store, T0, T0 + 6 * 3600, bucket="15m", drift=rep.to_dict(), alerts=res.to_dict(), split=T0 + 4 * 3600, title="Support bot")
    assert again.html == html


def test_empty_store_and_empty_window_say_no_traffic(tmp_path, store):
    empty = TraceStore(tmp_path / "empty.sqlite")
    page = dashboard(empty)
    assert page.requests == 0 and "No traffic in this window" in page.html and page.sections == ["header"]
    assert len(timeseries(empty)) == 0
    res = check(empty, {"rules": [{"name": "slow", "metric": "latency_ms.p95", "max": 1}]}, notify=False, record=False)
    page = dashboard(store, T0 - 86400, T0 - 3600, alerts=res)
    assert "No traffic in this window" in page.html and "alerts" in page.sections and "no data" in page.html
    assert page.save(tmp_path / "e.html").stat().st_size > 0


def test_one_request_and_non_ascii(tmp_path):
    s = TraceStore(tmp_path / "one.sqlite")
    s.record({"ts": T0 + 5, "status": "answered", "total_ms": 123.0, "question": "Wie kündige ich? 解約方法は？", "feedback_score": 1.0})
    page = dashboard(s, title="Überwachung 监控 <b>")
    assert page.requests == 1 and "<h1>Überwachung 监控 &lt;b&gt;</h1>" in page.html and "<title>Überwachung 监控 &lt;b&gt;</title>" in page.html
    assert page.html.count("data:image/svg+xml") == 4
    assert timeseries(s)["latency_p95"].tolist() == [123.0]


def test_user_text_is_escaped(store):
    evil = "<img src=x onerror=alert(1)>"
    alerts = {"checks": [{"rule": evil, "severity": "critical", "status": "fired", "check": evil, "value": 1.0, "detail": evil}],
              "delivered": {"error": evil}}
    drift = {"alpha": 0.05, "rows": [{"feature": evil, "test": "ks", "statistic": 0.5, "p_value": 1e-9, "p_adjusted": 1e-8, "drifted": True,
                                      "reference": evil, "current": 1.0}], "notes": [evil]}
    html = dashboard(store, alerts=alerts, drift=drift, title=evil).html
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_100k_rows_are_fast(tmp_path):
    s = TraceStore(tmp_path / "big.sqlite")
    n, rng = 100_000, np.random.default_rng(0)
    ts = np.sort(T0 + rng.uniform(0, 7 * 86400, n))
    status = rng.choice(["answered", "refused", "blocked", "error"], n, p=[.85, .07, .06, .02])
    rows = [{"trace_id": f"b{i}", "ts": float(ts[i]), "status": str(status[i]), "input_action": "block" if status[i] == "blocked" else "allow",
             "total_ms": float(rng.gamma(4, 200)), "prompt_tokens": 400, "completion_tokens": 60, "steps_ms": '{"generate": 700.0}'} for i in range(n)]
    cols = list(COLUMNS)
    with sqlite3.connect(s.path) as c:      # bulk insert: a realistic store of 100k rows without 100k record() calls
        c.executemany(f"INSERT INTO traces ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [[r.get(k) for k in cols] for r in rows])
    t = time.perf_counter(); series = timeseries(s, bucket="1h"); t_series = time.perf_counter() - t
    t = time.perf_counter(); page = dashboard(s, split=T0 + 6 * 86400); t_page = time.perf_counter() - t
    assert series["requests"].sum() == n and len(series) == 7 * 24
    assert page.requests == n and len(page.html) < 2_000_000
    assert t_series < 3 and t_page < 15, (t_series, t_page)     # a few seconds at most, on a shared 2-core machine


@pytest.mark.parametrize("call, match", [
    (lambda s: timeseries(s, bucket="1 fortnight"), "bucket: cannot read"),
    (lambda s: timeseries(s, bucket=True), "bucket"),
    (lambda s: timeseries(s, 0, T0, bucket="1m"), "choose a wider bucket"),
    (lambda s: timeseries(s, since="yesterday"), "since: 'yesterday'"),
    (lambda s: timeseries(s, T0 + 10, T0), "must be before until"),
    (lambda s: timeseries([{"ts": 1}]), "expected a TraceStore or a DataFrame"),
    (lambda s: timeseries(pd.DataFrame({"x": [1]})), "no 'ts' column"),
    (lambda s: dashboard(s.frame()), "store: expected a TraceStore"),
    (lambda s: dashboard(s, fmt="jpg"), "fmt: expected"),
    (lambda s: dashboard(s, title=b"\xff\x00"), "title: expected a string"),
    (lambda s: dashboard(s, drift="x" * 1_000_000), "drift: expected a DriftReport"),
    (lambda s: dashboard(s, alerts=[1, 2]), "alerts: expected a MonitorCheck"),
    (lambda s: dashboard(s, split=object()), "split"),
    (lambda s: dashboard(s).save(None), "path: expected a file path"),
])
def test_bad_input_is_a_clear_error(store, call, match):
    with pytest.raises((TypeError, ValueError), match=re.escape(match)):
        call(store)


def test_junk_rows_in_a_frame_are_skipped_not_a_crash():
    df = pd.DataFrame({"ts": [T0, "junk", None, T0 + 60], "total_ms": ["x" * 1_000_000, 5.0, 1.0, b"\x00\xff"], "status": [1, None, "ok", "error"]})
    ts = timeseries(df, bucket="1h")
    assert ts["requests"].tolist() == [2.0] and ts["error_rate"].tolist() == [0.5]


def test_resources_per_request_and_job_resources(home, tmp_path):
    from llmops_nb.core import load_settings
    from llmops_nb.runs import list_runs, start_run
    s = TraceStore(tmp_path / "res.sqlite")
    t0 = 1_800_000_000.0
    for i in range(6):
        s.record({"ts": t0 + i * 900, "status": "answered", "total_ms": 500.0, "cpu_ms": 100.0 * (i + 1), "rss_mb": 700.0 + i,
                  "gpu_peak_mb": 2048.0 if i == 5 else None})
    ts = timeseries(s, t0, t0 + 2 * 3600, bucket="1h")
    assert list(ts["cpu_ms"]) == [250.0, 550.0] and list(ts["rss_mb"]) == [703.0, 705.0] and ts["gpu_peak_mb"].isna().tolist() == [True, False]
    with start_run("train_sft", {}, settings=load_settings(tracker="none")) as run:
        with run.stage("train"): pass
    page = dashboard(s, runs=list_runs(home / "runs"))
    assert "resources" in page.sections and "runs" in page.sections and run.id in page.html and "GPU peak" in page.html
    plain = TraceStore(tmp_path / "plain.sqlite"); plain.record({"ts": t0, "status": "answered", "total_ms": 5.0})
    assert "resources" not in dashboard(plain).sections                      # no figures recorded: no empty chart
    with pytest.raises(TypeError, match="runs: expected a list of RunRecords"): dashboard(s, runs={"a": 1})
