"Alert rules over the trace store through the public API and `llmops monitor check`: thresholds, drift, records, webhook, exit codes, bad input."
import json, random, subprocess, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import pytest
from conftest import LLMOPS
from llmops_nb.alerts import alerts_path, check, load_alert_rules
from llmops_nb.core import ConfigError, read_jsonl
from llmops_nb.tracestore import TraceStore

T0 = 1_800_000_000.0
RULES = {"rules": [{"name": "slow", "metric": "latency_ms.p95", "window": "1h", "max": 5000, "min_requests": 10},
                   {"name": "blocked", "metric": "input_block_rate", "window": "1h", "max": 0.2, "severity": "critical"},
                   {"name": "feedback", "metric": "feedback.score_mean", "window": "2h", "min": 0.5}]}


@pytest.fixture
def store(tmp_path):
    "Two hours of traffic: a healthy hour, then a slow hour with half the questions blocked."
    s, rng = TraceStore(tmp_path / "traces.sqlite"), random.Random(1)
    for i in range(120):
        bad = i >= 60
        s.record({"trace_id": f"t{i}", "ts": T0 + 60 * i, "status": "refused" if bad and i % 2 else "answered",
                  "input_action": "block" if bad and i % 2 else "allow", "total_ms": 9000.0 if bad else rng.gauss(800, 60),
                  "question": f"Where is my order number {1000 + i}?", "answer": "It ships tomorrow."})
        s.feedback(f"t{i}", score=1.0 if i % 3 else 0.0)
    return s


class Hook(BaseHTTPRequestHandler):
    got, status = [], 204
    def log_message(self, *a): pass
    def do_POST(self):
        Hook.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(Hook.status); self.end_headers()


@pytest.fixture
def hook():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Hook.got, Hook.status = [], 204
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()


def test_thresholds_fire_record_and_post(store, hook, monkeypatch):
    monkeypatch.setenv("MY_HOOK", hook)
    res = check(store, {**RULES, "webhook": {"url": "env:MY_HOOK"}}, now=T0 + 7200)
    assert [a.rule for a in res.alerts] == ["slow", "blocked"] and res.fired
    assert {c["rule"]: c["status"] for c in res.checks} == {"slow": "fired", "blocked": "fired", "feedback": "ok"}
    assert res.delivered["status"] == 204 and [a["rule"] for a in Hook.got[0]["alerts"]] == ["slow", "blocked"]
    logged = read_jsonl(alerts_path(store))
    assert [r["rule"] for r in logged] == ["slow", "blocked"] and logged[1]["severity"] == "critical"
    assert hook not in json.dumps(res.to_dict())                           # the webhook URL is never echoed
    healthy = check(store, RULES, now=T0 + 3600, record=False)
    assert not healthy.fired and all(c["status"] == "ok" for c in healthy.checks)


def test_empty_window_is_no_data_and_unknown_metric_is_an_error(store):
    res = check(store, RULES, now=T0 - 86400, record=False)
    assert [c["status"] for c in res.checks] == ["no data"] * 3 and not res.fired
    with pytest.raises(ConfigError, match="rule 'typo': unknown metric 'latency.p95'.*latency_ms"):
        check(store, {"rules": [{"name": "typo", "metric": "latency.p95", "max": 1}]}, now=T0 + 7200)


def test_drift_rule_fires_on_a_shift_and_not_on_the_same_traffic(store):
    shift = check(store, {"rules": [{"name": "shift", "drift": "total_ms", "window": "1h", "reference": "1h"}]}, now=T0 + 7200, record=False)
    assert shift.fired and "total_ms" in shift.checks[0]["detail"]
    same = check(store, {"rules": [{"name": "shift", "drift": "any", "window": "30m", "reference": "30m"}]}, now=T0 + 3600, record=False)
    assert not same.fired


def test_a_dead_or_failing_webhook_never_breaks_the_check(store, hook):
    Hook.status = 500
    res = check(store, {**RULES, "webhook": hook}, now=T0 + 7200, record=False)
    assert res.fired and res.delivered["error"].endswith("HTTP 500") and res.delivered["attempts"] == 3
    dead = check(store, {**RULES, "webhook": "http://127.0.0.1:9/token-abc123"}, now=T0 + 7200, record=False)
    assert "error" in dead.delivered and "token-abc123" not in json.dumps(dead.delivered)


@pytest.mark.parametrize("rules, message", [
    ({"rules": [{"metric": "error_rate", "window": "1h"}]}, "needs 'min' and/or 'max'"),
    ({"rules": [{"metric": "error_rate", "max": 0.1, "window": "soon"}]}, "rule 1: window: cannot read 'soon'"),
    ({"rules": [{"metric": "error_rate", "max": 0.1, "severity": "meh"}]}, "severity"),
    ({"rules": [{"drift": "any", "alpha": 2}]}, "alpha must be between 0 and 1"),
    ({"rules": "error_rate > 0.1"}, "non-empty 'rules:' list"),
    ({"rules": [{"metric": "x", "max": 1}], "pager": "yes"}, "unknown top-level key"),
    ({"rules": [{"metric": "x", "max": 1}], "webhook": "ftp://example.com"}, "http(s) URL"),
])
def test_bad_rules_are_refused_with_the_rule_and_field(rules, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_alert_rules(rules)


def test_llmops_monitor_check_exit_codes(store, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: slow, metric: latency_ms.p95, window: 1h, max: 5000}\n")
    run = lambda *a: subprocess.run([LLMOPS, "monitor", "check", "--store", str(store.path), *a], capture_output=True, text=True, timeout=120)
    fired = run("--rules", str(rules), "--now", str(T0 + 7200), "--json")
    assert fired.returncode == 1, fired.stderr
    assert json.loads(fired.stdout)["alerts"][0]["rule"] == "slow"
    calm = run("--rules", str(rules), "--now", str(T0 + 3600))
    assert calm.returncode == 0 and "no alert" in calm.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: slow, metric: latency_ms.p95, window: 1h\n")
    out = run("--rules", str(bad))
    assert out.returncode == 2 and "bad.yaml" in out.stderr
    missing = subprocess.run([LLMOPS, "monitor", "check", "--rules", str(rules), "--store", str(tmp_path / "none.sqlite")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "none.sqlite" in missing.stderr
