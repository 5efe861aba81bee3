"Fuzz the HTTP API from its own OpenAPI schema (schemathesis): no generated request, valid or not, may get a 5xx."
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st

from llmops_nb.tracestore import TraceStore
from llmops_nb.pipeline import RAGPipeline
from llmops_nb.retrieval import VectorStore
from llmops_nb.serve import create_app

from test_serve import AUTH, KEY, PASSAGES, Scripted


def make_app(tmp):
    "A served pipeline over a tiny store (with tenant and year metadata to filter on) and a scripted generator."
    kb = VectorStore()
    kb.add(list(PASSAGES), [t for t, _ in PASSAGES.values()],
           [{"title": ti, "year": 2024 + i, "tenant": "acme" if i else None} for i, (_, ti) in enumerate(PASSAGES.values())])
    return create_app(RAGPipeline(kb, Scripted(), k=2), store=TraceStore(tmp / "traces.sqlite"), keys=[KEY, "acme:other-key-0123456789abcdef"],
                      rate_limit=None, max_auth_failures=None, timeout_s=20)


@pytest.fixture(scope="module")
def app(tmp_path_factory): return make_app(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def chat_app(tmp_path_factory): return make_app(tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="module")
def api_schema(app):
    spec = app.openapi()
    assert {"/v1/chat/completions", "/v1/feedback", "/v1/models", "/healthz", "/metrics"} <= set(spec["paths"])
    assert "requestBody" in spec["paths"]["/v1/chat/completions"]["post"]      # the bodies the routes parse are in the schema
    schema = schemathesis.openapi.from_dict(spec)
    schema.app = app
    return schema


OPERATIONS = [("/v1/chat/completions", "POST"), ("/v1/feedback", "POST"), ("/v1/models", "GET"), ("/healthz", "GET"), ("/metrics", "GET")]


@pytest.mark.parametrize("path,method", OPERATIONS)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_no_generated_request_gets_a_server_error(api_schema, path, method, data):
    case = data.draw(api_schema[path][method].as_strategy())
    for headers in (AUTH, None):                                   # with the key (deep into the pipeline) and as a stranger
        r = case.call(headers=headers)
        assert r.status_code < 500, f"{case.method} {case.path} -> {r.status_code}: {r.text[:500]}\n{case.as_curl_command()}"


# Schema-driven bodies rarely get past validation (a user message with a question, within the caps), so a second
# property test builds valid-shaped requests with arbitrary text (lone surrogates, control characters included),
# settings at and past their bounds and `where` filters over known and unknown fields, to fuzz the pipeline path.
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=False), st.text(max_size=8))
_cond = st.one_of(_scalar, st.lists(_scalar, max_size=3),
                  st.dictionaries(st.sampled_from(["eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "like"]),
                                  st.one_of(_scalar, st.lists(_scalar, max_size=3)), min_size=1, max_size=2))
_where = st.dictionaries(st.sampled_from(["title", "year", "tenant", "missing", " "]), _cond, max_size=2)
_text = st.text(st.characters(codec=None, exclude_categories=()), min_size=0, max_size=60)
_message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant"]), "content": _text})
_question = st.fixed_dictionaries({"role": st.just("user"), "content": _text.filter(str.strip)})
_request = st.fixed_dictionaries(
    {"messages": st.tuples(st.lists(_message, max_size=2), _question).map(lambda m: [*m[0], m[1]])},
    optional={"stream": st.booleans(), "max_tokens": st.integers(1, 10**6), "temperature": st.floats(0, 1.2),
              "llmops": st.fixed_dictionaries({}, optional={"where": _where}), "user": st.text(max_size=20)})


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=_request)
def test_valid_shaped_chat_requests_never_get_a_server_error(chat_app, body):
    import json
    from fastapi.testclient import TestClient
    r = TestClient(chat_app).post("/v1/chat/completions", headers={**AUTH, "Content-Type": "application/json"}, content=json.dumps(body).encode())
    assert r.status_code < 500, f"{body!r} -> {r.status_code}: {r.text[:500]}"
    if r.status_code == 200 and not body.get("stream"): assert r.json()["object"] == "chat.completion"
