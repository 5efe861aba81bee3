"OpenTelemetry export against a real collector: an MLflow tracking server started by the test receives the spans of a pipeline request over OTLP/HTTP."
import importlib.util, os, signal, socket, subprocess, sys, threading, time
from pathlib import Path
import httpx
import pytest

from llmops_nb import telemetry
from llmops_nb.tracestore import TraceStore
from llmops_nb.pipeline import RAGPipeline
from llmops_nb.retrieval import VectorStore
from llmops_nb.telemetry import export_trace, otel_trace_id, parse_traceparent, provider, span_ids

OTEL_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
             "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
PASSAGES = {"returns#0": "Unused items can be returned within 30 days of delivery for a full refund.",
            "shipping#0": "Standard shipping within the UK takes 3 to 5 working days."}


@pytest.fixture(autouse=True)
def clean_otel(monkeypatch):
    for v in OTEL_VARS: monkeypatch.delenv(v, raising=False)
    telemetry.shutdown()
    yield
    telemetry.shutdown()


def _free_port() -> int:
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    "An MLflow tracking server (SQLite store, one worker) on a free port; its URL."
    if importlib.util.find_spec("mlflow") is None: pytest.skip("mlflow is not installed (pip install -e '.[dev]'): no collector to test against")
    d, port = tmp_path_factory.mktemp("mlflow"), _free_port()
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]
    log = open(d / "server.log", "w")
    p = subprocess.Popen(cmd + ["server", "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}", "--default-artifact-root", str(d / "artifacts"),
                                "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                         cwd=d, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if p.poll() is not None: pytest.fail(f"mlflow server exited with {p.returncode}: {(d / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200: break
            except httpx.HTTPError: pass
            time.sleep(0.3)
        else: pytest.fail("mlflow server did not answer /health within 120 s")
        yield url
    finally:
        os.killpg(p.pid, signal.SIGKILL); p.wait()      # the server's own process group (uvicorn, its job runner): a throwaway store
        log.close()


def _spans(url: str, trace_id: str, timeout: float = 20) -> list:
    "(name, span id, parent span id, attributes) of the spans MLflow holds for OTel trace `trace_id` (waits until they are there)."
    import base64
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{url}/api/3.0/mlflow/traces/get", params={"trace_id": f"tr-{trace_id}"}, timeout=10)
        if r.status_code == 200: break
        if time.monotonic() > deadline: pytest.fail(f"trace {trace_id} never reached MLflow: {r.status_code} {r.text[:300]}")
        time.sleep(0.3)
    val = lambda v: [val(x) for x in v["array_value"].get("values", [])] if "array_value" in v else next(iter(v.values()))
    hexid = lambda b: base64.b64decode(b).hex() if b else None
    return [(s["name"], hexid(s["span_id"]), hexid(s.get("parent_span_id")), {a["key"]: val(a["value"]) for a in s.get("attributes", [])})
            for s in r.json()["trace"]["spans"]]


def _count(url: str) -> int:
    body = {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}], "max_results": 500}
    return len(httpx.post(f"{url}/api/3.0/mlflow/traces/search", json=body, timeout=10).json().get("traces", []))


@pytest.fixture(scope="module")
def pipeline(tiny_model):
    from llmops_nb.generate import HFGenerator
    kb = VectorStore(); kb.add(list(PASSAGES), list(PASSAGES.values()))
    return RAGPipeline(kb, HFGenerator(tiny_model, config={"max_new_tokens": 8}), k=2, retries=0)


def _export_env(monkeypatch, url: str, **extra):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)                          # the base URL: /v1/traces is added
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-mlflow-experiment-id=0")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "llmops-test")
    for k, v in extra.items(): monkeypatch.setenv(k, v)


@pytest.mark.slow   # a real MLflow server: about 40 s with its start-up
def test_a_request_reaches_mlflow_with_genai_attributes_and_the_store_row_id(mlflow_server, pipeline, tmp_path, monkeypatch):
    _export_env(monkeypatch, mlflow_server)
    store = TraceStore(tmp_path / "traces.sqlite")
    a = pipeline.answer("How long is the return window?")
    a.trace.meta["otel"] = span_ids(a.trace)                                          # as the server does before recording
    row = store.get(store.record(a))
    ids = export_trace(a.trace)
    assert telemetry.flush(20)
    assert ids == {k: a.trace.meta["otel"][k] for k in ids} and ids["trace_id"] == row["otel_trace_id"] == otel_trace_id(row["trace_id"])
    spans = {name: (sid, parent, attrs) for name, sid, parent, attrs in _spans(mlflow_server, row["otel_trace_id"])}
    root_id, root_parent, root = spans["llmops.answer"]
    assert root_parent is None and root_id == row["otel_span_id"] and root["llmops.trace_id"] == row["trace_id"]
    assert root["llmops.status"] == row["status"] and root["llmops.policy"] == row["policy"]
    gen = next(v for k, v in spans.items() if k.startswith("chat "))
    g = gen[2]
    assert gen[1] == root_id
    assert (g["gen_ai.operation.name"], g["gen_ai.provider.name"], g["gen_ai.system"]) == ("chat", "huggingface", "huggingface")
    assert g["gen_ai.request.model"] == g["gen_ai.response.model"] == row["model"]
    assert (g["gen_ai.usage.input_tokens"], g["gen_ai.usage.output_tokens"]) == (row["prompt_tokens"], row["completion_tokens"])
    assert g["gen_ai.response.finish_reasons"][0] in ("stop", "length") and g["gen_ai.request.max_tokens"] == 8
    assert {"input_guard", "retrieve", "prompt", "output_guard"} <= set(spans)
    assert spans["retrieve"][2]["llmops.retrieval.hits"] == 2 and all(p == root_id for n, (s, p, _) in spans.items() if n != "llmops.answer")
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output")) for _, _, at in spans.values() for k in at)   # no capture switch: no text
    assert store.get(row["otel_trace_id"])["trace_id"] == row["trace_id"]                    # the collector's id leads back to the row


@pytest.mark.slow   # a real MLflow server: about 40 s with its start-up
def test_a_traceparent_joins_the_callers_trace_and_content_is_redacted(mlflow_server, pipeline, tmp_path, monkeypatch):
    _export_env(monkeypatch, mlflow_server, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    caller, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
    tp = f"00-{caller}-{caller_span}-01"
    q = "How long is the return window? Write to jane.doe@example.com"
    a = pipeline.answer(q)
    ids = export_trace(a, parent=tp, content={"question": q, "answer": a.text})
    assert telemetry.flush(20) and ids["trace_id"] == caller and ids["parent_span_id"] == caller_span
    spans = {name: (sid, parent, attrs) for name, sid, parent, attrs in _spans(mlflow_server, caller)}
    root_id, parent, root = spans["llmops.answer"]
    assert parent == caller_span and root_id == ids["span_id"]
    sent = str(root["gen_ai.input.messages"])                                          # MLflow keeps the message JSON as a structure
    assert "jane.doe" not in sent and "return window" in sent and "<EMAIL>" in sent
    assert "gen_ai.output.messages" in root


@pytest.mark.slow   # a real MLflow server: about 40 s with its start-up
def test_nothing_is_exported_or_started_when_the_variables_are_unset(mlflow_server, pipeline):
    before, threads = _count(mlflow_server), {t.name for t in threading.enumerate()}
    a = pipeline.answer("How long is the return window?")
    assert export_trace(a.trace) is None and provider() is None and telemetry._STATE["provider"] is None
    assert {t.name for t in threading.enumerate()} <= threads                       # no exporter thread
    time.sleep(1)
    assert _count(mlflow_server) == before


def test_an_unreachable_collector_never_fails_the_caller(pipeline, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{_free_port()}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")                          # seconds the exporter keeps retrying at shutdown
    a = pipeline.answer("How long is the return window?")
    t0 = time.perf_counter(); ids = export_trace(a.trace)
    assert ids["trace_id"] == otel_trace_id(a.trace.id) and time.perf_counter() - t0 < 1.0      # queued, not sent inline


def test_bad_input_is_refused_clearly(monkeypatch):
    with pytest.raises(TypeError, match="trace: expected a pipeline Trace"): export_trace(42)
    with pytest.raises(TypeError, match="content: expected a dict"): export_trace({"id": "ab" * 16, "steps": []}, content="text")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' is not an http"): provider()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_HEADERS: entry 1 is not key=value"): provider()
    assert parse_traceparent("00-zz-yy-01") is None and parse_traceparent(b"00-" + b"a" * 32) is None


SERVE_KEY = "otel-test-key-0123456789abcdef"


@pytest.mark.slow   # a real MLflow server: about 40 s with its start-up
def test_a_served_request_reaches_mlflow_with_the_row_id_and_a_traceparent_joins_the_callers_trace(mlflow_server, tiny_model, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient
    from llmops_nb.generate import HFGenerator
    from llmops_nb.serve import create_app
    _export_env(monkeypatch, mlflow_server, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    kb = VectorStore(); kb.add(list(PASSAGES), list(PASSAGES.values()))
    policy = {"extends": "default", "telemetry": {"content": True}}                 # the release allows redacted text in spans
    store = TraceStore(tmp_path / "traces.sqlite")
    app = create_app(RAGPipeline(kb, HFGenerator(tiny_model, config={"max_new_tokens": 8}), k=2, retries=0, policy=policy), store=store, keys=[SERVE_KEY])
    body = {"model": "rag", "messages": [{"role": "user", "content": "How long is the return window? Mail jane.doe@example.com"}]}
    auth = {"Authorization": f"Bearer {SERVE_KEY}"}
    with TestClient(app) as c:
        r = c.post("/v1/chat/completions", json=body, headers=auth)
        assert r.status_code == 200, r.text
        tid = r.json()["id"]                                                      # what the client holds
        caller, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
        r2 = c.post("/v1/chat/completions", json=body, headers={**auth, "traceparent": f"00-{caller}-{caller_span}-01"})
        assert r2.status_code == 200, r2.text
    assert telemetry.flush(20)
    row = store.get(tid)
    assert row["otel_trace_id"] == tid                                            # the client's id, the row id and the OTel trace id agree
    spans = {name: (sid, parent, attrs) for name, sid, parent, attrs in _spans(mlflow_server, tid)}
    root_id, _, root = spans["llmops.answer"]
    assert root_id == row["otel_span_id"] and any(n.startswith("chat ") for n in spans)
    sent = str(root.get("gen_ai.input.messages"))
    assert "return window" in sent and "jane.doe" not in sent                     # content allowed by the policy, and redacted
    joined = {name: (sid, parent) for name, sid, parent, _ in _spans(mlflow_server, caller)}
    assert joined["llmops.answer"][1] == caller_span                              # a child of the caller's span
    row2 = store.get(r2.json()["id"])
    assert row2["otel_trace_id"] == caller and store.get(caller)["trace_id"] == row2["trace_id"]   # `llmops lineage CALLER_ID` finds it


def test_a_served_request_exports_no_text_unless_the_policy_allows(tiny_model, tmp_path, monkeypatch):
    from llmops_nb.serve import _content_allowed
    kb = VectorStore(); kb.add(list(PASSAGES), list(PASSAGES.values()))
    from llmops_nb.generate import HFGenerator
    gen = HFGenerator(tiny_model, config={"max_new_tokens": 4})
    assert not _content_allowed(RAGPipeline(kb, gen, policy="default"))
    assert _content_allowed(RAGPipeline(kb, gen, policy={"extends": "default", "telemetry": {"content": True}}))
    from llmops_nb.guard import PolicyError, load_policy
    with pytest.raises(PolicyError, match="telemetry: unknown setting 'text'"): load_policy({"telemetry": {"text": True}})
    with pytest.raises(PolicyError, match="telemetry.content must be bool"): load_policy({"telemetry": {"content": "yes"}})
    assert load_policy("default").digest == load_policy({"extends": "default"}).digest != load_policy({"extends": "default", "telemetry": {"content": True}}).digest
