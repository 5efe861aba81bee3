"Token streaming through the incremental output guard: split secrets and PII never reach the client, blocks stop generation, buffered fallback, disconnects cancel."
import json, re, threading, time
import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from llmops_nb.generate import Generation, GenerationCancelled, Generator, Stream
from llmops_nb.guard import StreamGuard, scan_output, stream_mode
from llmops_nb.tracestore import TraceStore
from llmops_nb.pipeline import RAGPipeline
from llmops_nb.retrieval import VectorStore
from llmops_nb.serve import create_app, stream_chunks

LENIENT = {"extends": "default", "output": {"groundedness": None}}      # no whole-answer guard: the policy streams
KEY = "test-key-0123456789abcdefghij"
AUTH = {"Authorization": f"Bearer {KEY}"}
Q = "How long is the return window?"
SECRETS = ["sk-proj-AbCdEf0123456789XyZ", "AKIAIOSFODNN7EXAMPLE", "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
           "xoxb-1234567890-abcdefghij", "hf_abcdefghijklmnopqrstuvwxyz", "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4fw"]
PII = ["jane.doe@example.com", "4111 1111 1111 1111", "+44 20 7946 0958", "123-45-6789", "DE89 3704 0044 0532 0130 00", "192.168.10.42"]
PLAIN = ["Sure, here it is:", "**Your key:**", "- Contact |", "<<passage [2]>> ### Note:", "The value you asked for is", "Please use", "Our records show", "Contact"]
AFTER = [" and that is all.", ". Let me know if you need more help with it.", " for the account", "", " today"]


def feed_all(policy, pieces):
    "What a client receives when `pieces` go through a StreamGuard: the shown pieces and the final verdict."
    g = StreamGuard(policy)
    shown = [g.feed(p) for p in pieces]
    rest, v = g.close()
    return shown + [rest], v, g


def splits(text, cuts):
    cuts = sorted({c for c in cuts if 0 < c < len(text)})
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


# ---------------------------------------------------------------- the guard

@pytest.mark.parametrize("value", SECRETS + PII)
def test_a_secret_or_pii_split_at_every_point_never_reaches_the_client(value):
    text = f"Sure, here it is: {value} and that is all."
    want = scan_output(text, policy=LENIENT).text
    assert value not in want                                         # the whole-answer guard redacts it
    for i in range(1, len(text)):                                    # every split point, and one piece per character
        shown, v, g = feed_all(LENIENT, [text[:i], text[i:]])
        assert "".join(shown) == want and not g.mismatch, i
    shown, v, g = feed_all(LENIENT, list(text))
    assert "".join(shown) == want and v.text == want
    assert all(value[:6] not in "".join(shown[:k]) for k in range(len(shown)))   # not even its start, at any moment


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.sampled_from(PLAIN), value=st.sampled_from(SECRETS + PII), after=st.sampled_from(AFTER),
       cuts=st.lists(st.integers(1, 120), max_size=12))
def test_any_chunking_shows_exactly_the_redacted_answer(before, value, after, cuts):
    text = f"{before} {value}{after}"
    shown, v, g = feed_all(LENIENT, splits(text, cuts))
    assert v.text == scan_output(text, policy=LENIENT).text                 # the final verdict is scan_output's
    assert "".join(shown) == v.text and value not in "".join(shown)


def test_plain_text_is_released_as_it_comes():
    text = "The capital of France is Paris and it is lovely in spring"
    shown, v, g = feed_all(LENIENT, re.findall(r"\s*\S+", text))
    assert sum(bool(s) for s in shown[:-1]) >= 9 and "".join(shown) == text   # held back by one word at most


def test_a_block_stops_the_stream_and_shows_nothing_more():
    g = StreamGuard(LENIENT)
    shown = [g.feed(p) for p in ["Fine. ", "You are ", "a stupid ", "idiot ", "and ", "more"]]
    assert g.stopped and "idiot" not in "".join(shown) and "stupid" not in "".join(shown)
    assert shown[-1] == "" and g.close() == ("", g.verdict) and g.verdict.action == "block"


def test_strict_policy_blocks_a_secret_before_any_of_it_is_shown():
    strict = {"extends": "strict", "output": {"groundedness": None}}
    assert stream_mode(strict)[0] == "streaming"
    shown, v, g = feed_all(strict, list("Here: sk-proj-AbCdEf0123456789XyZ ok then more words"))
    assert v.action == "block" and "sk-" not in "".join(shown) and g.stopped


def test_stream_mode_says_why_a_policy_buffers():
    mode, why = stream_mode("default")
    assert mode == "buffered" and "groundedness" in why and "retry" in why
    assert stream_mode({"extends": "default", "output": {"groundedness": None, "json": {"action": "retry"}}})[0] == "buffered"
    assert StreamGuard().mode == "buffered" and StreamGuard(LENIENT, mode="buffered").mode == "buffered"


def test_guard_bad_inputs():
    with pytest.raises(TypeError, match="delta must be a str"): StreamGuard(LENIENT).feed(None)
    with pytest.raises(ValueError, match="mode must be"): StreamGuard(LENIENT, mode="live")
    with pytest.raises(TypeError, match="context\\[0\\]"): StreamGuard(LENIENT, contexts=[3])
    g = StreamGuard(LENIENT); g.close()
    with pytest.raises(RuntimeError, match="closed"): g.feed("more")


# ---------------------------------------------------------------- the pipeline

class Streamer(Generator):
    "A generator that streams `text` in 3-character pieces, `delay` seconds apart, and stops when `cancel` is set."
    def __init__(self, text, delay=0.0):
        self.text, self.delay, self.produced, self.closed = text, delay, 0, threading.Event()
    def info(self): return {"backend": "fake", "model": "streamer-1", "model_digest": "0" * 64, "device": "cpu"}
    def generate(self, prompt, **kw): return Generation(self.text, "stop", 10, len(self.text) // 3, 0.0, "streamer-1")
    def stream(self, prompt, *, deadline=None, cancel=None, **kw):
        toks = re.findall(r"\s*\S{1,3}", self.text)
        def pieces():
            t0 = time.perf_counter()
            try:
                for t in toks:
                    if cancel is not None and cancel.is_set(): raise GenerationCancelled("generation stopped: cancelled")
                    time.sleep(self.delay); self.produced += 1
                    yield t
            finally: self.closed.set()
            return Generation(self.text, "stop", 10, len(toks), time.perf_counter() - t0, "streamer-1", ttft_s=self.delay)
        return Stream(pieces())


class Plain:
    "A generator without streaming."
    def info(self): return {"backend": "plain", "model": "plain-1"}
    def generate(self, prompt, **kw): return Generation("Returns are accepted within 30 days [1].", "stop", 5, 8, 0.0, "plain-1")


@pytest.fixture(scope="module")
def kb():
    s = VectorStore()
    s.add(["returns#0", "shipping#0"], ["Unused items can be returned within 30 days of delivery for a full refund.",
                                        "Standard shipping within the UK takes 3 to 5 working days."], [{"title": "Returns"}, {"title": "Shipping"}])
    return s


def test_answer_stream_streams_guarded_text_and_traces_it(kb):
    text = "Returns are accepted within 30 days [1]. For help call +44 20 7946 0958 or write to jane.doe@example.com today."
    gen = Streamer(text)
    events = list(RAGPipeline(kb, gen, policy=LENIENT, k=2).answer_stream(Q))
    assert [e["type"] for e in events][:2] == ["mode", "delta"] and events[0]["mode"] == "streaming" and events[-1]["type"] == "answer"
    deltas, a = [e["text"] for e in events if e["type"] == "delta"], events[-1]["answer"]
    assert len(deltas) > 5 and "".join(deltas) == a.text and "7946" not in a.text and "jane.doe" not in a.text
    assert a.status == "answered" and [c.id for c in a.citations] == ["returns#0"] and a.trace.id == events[0]["trace_id"]
    st = {s.name: s for s in a.trace.steps}
    assert st["generate"].data["ttft_ms"] is not None and st["generate"].data["streamed"] and st["output_guard"].data["shown_chars"] == len(a.text)
    assert re.fullmatch(r"[0-9a-f]{32}", a.trace.id) and a.trace.start_ns > 0
    assert [s.at_ms for s in a.trace.steps] == sorted(s.at_ms for s in a.trace.steps)
    res = a.trace.meta["resources"]
    assert res["cpu_ms"] >= 0 and res["rss_mb"] > 10 and res["gpu_peak_mb"] is None
    assert a.trace.meta["stream"]["first_delta_ms"] <= a.trace.total_ms


def test_a_block_mid_stream_stops_generation(kb):
    gen = Streamer("Fine. You are a stupid idiot and " + "this goes on and on " * 40)
    events = list(RAGPipeline(kb, gen, policy=LENIENT, k=2).answer_stream(Q))
    a, shown = events[-1]["answer"], "".join(e["text"] for e in events if e["type"] == "delta")
    refusal = RAGPipeline(kb, gen).policy.refusal
    assert a.status == "blocked" and a.text == refusal and shown.endswith(refusal)
    assert "idiot" not in shown and gen.produced < 20 and gen.closed.is_set()      # stopped, not run to the end
    assert a.trace.meta["stream"]["shown_before_refusal"] <= len("Fine. You are a ")      # the insult itself never shown


def test_buffered_fallback_is_announced_first(kb):
    events = list(RAGPipeline(kb, Streamer("Returns are accepted within 30 days [1]."), k=2).answer_stream(Q))  # default policy
    assert events[0]["type"] == "mode" and events[0]["mode"] == "buffered" and "groundedness" in events[0]["reason"]
    assert [e["type"] for e in events] == ["mode", "delta", "answer"] and events[-1]["answer"].trace.meta["stream"]["mode"] == "buffered"
    events = list(RAGPipeline(kb, Plain(), policy=LENIENT, k=2).answer_stream(Q))
    assert events[0]["mode"] == "buffered" and "cannot stream" in events[0]["reason"] and events[-1]["answer"].status == "answered"


def test_cancel_stops_a_stream(kb):
    gen, stop = Streamer("word " * 200, delay=0.005), threading.Event()
    it = RAGPipeline(kb, gen, policy=LENIENT, k=2).answer_stream(Q, cancel=stop)
    assert next(it)["type"] == "mode" and next(it)["type"] == "delta"
    stop.set()
    with pytest.raises(GenerationCancelled) as e:
        list(it)
    assert gen.produced < 100 and e.value.trace.status == "error"


def test_pipeline_bad_inputs(kb):
    p = RAGPipeline(kb, Streamer("x"), policy=LENIENT, k=2)
    with pytest.raises(ValueError, match="trace_id must be 32"): list(p.answer_stream(Q, trace_id="abc"))
    with pytest.raises(ValueError, match="trace_id must be 32"): p.answer(Q, trace_id="0" * 32)
    with pytest.raises(TypeError, match="text must be a str"): list(p.answer_stream(None))
    with pytest.raises(ValueError, match="mode event"): list(stream_chunks(iter([{"type": "delta", "text": "x"}]), "m"))


def test_hf_generator_streams_through_the_pipeline(kb, tiny_model):
    from llmops_nb.generate import HFGenerator
    gen = HFGenerator(tiny_model, chat=True)
    events = list(RAGPipeline(kb, gen, policy=LENIENT, k=2, max_new_tokens=24, temperature=0.0).answer_stream(Q))
    assert events[0]["mode"] == "streaming"
    a = events[-1]["answer"]
    g = [s for s in a.trace.steps if s.name == "generate"][-1].data
    assert g["ttft_ms"] is not None and g["ttft_ms"] > 0 and g["completion_tokens"] > 0
    assert "".join(e["text"] for e in events if e["type"] == "delta") == (a.text if a.status == "answered" else
                                                                        "".join(e["text"] for e in events if e["type"] == "delta"))


# ---------------------------------------------------------------- the server

def sse(text):
    return [json.loads(e[6:]) for e in text.split("\n\n") if e.startswith("data: ") and e != "data: [DONE]"]


def test_server_streams_tokens_with_the_mode_first_and_stores_the_trace(kb, tmp_path):
    from fastapi.testclient import TestClient
    store = TraceStore(tmp_path / "t.sqlite")
    text = "Returns are accepted within 30 days [1]. The key is sk-proj-AbCdEf0123456789XyZ, keep it."
    c = TestClient(create_app(RAGPipeline(kb, Streamer(text), policy=LENIENT, k=2), store=store, keys=[KEY], rate_limit=None))
    r = c.post("/v1/chat/completions", headers=AUTH, json={"messages": [{"role": "user", "content": Q}], "stream": True,
                                                           "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    evs = sse(r.text)
    assert evs[0]["llmops"]["mode"] == "streaming" and evs[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in evs if e["choices"])
    assert "sk-proj" not in content and "[SECRET:openai_key]" in content and len(evs) > 8
    fin = [e for e in evs if e["choices"] and e["choices"][0]["finish_reason"]][0]
    assert fin["llmops"]["status"] == "answered" and fin["llmops"]["citations"][0]["id"] == "returns#0" and evs[-1]["usage"]["completion_tokens"] > 0
    row = store.get(evs[0]["id"])
    assert row["status"] == "answered" and "sk-proj" not in json.dumps(row) and len(evs[0]["id"]) == 32
    m = c.get("/metrics", headers=AUTH).text
    assert "process_cpu_seconds_total" in m and "process_resident_memory_bytes" in m
    assert re.search(r"^llmops_request_cpu_seconds_count 1\.0$", m, re.M)


def test_openai_client_streams_from_the_server(kb):
    import openai
    from test_serve import running
    text = "Returns are accepted within 30 days of delivery [1]."
    with running(create_app(RAGPipeline(kb, Streamer(text, delay=0.01), policy=LENIENT, k=2), keys=[KEY], rate_limit=None)) as url:
        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
        chunks = list(client.chat.completions.create(model="llmops", messages=[{"role": "user", "content": Q}], stream=True))
    assert chunks[0].model_extra["llmops"]["mode"] == "streaming"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_client_that_disconnects_cancels_generation(kb, tmp_path):
    from test_serve import running
    store, gen = TraceStore(tmp_path / "t.sqlite"), Streamer("word " * 400, delay=0.01)       # 4 s if nobody stops it
    with running(create_app(RAGPipeline(kb, gen, policy=LENIENT, k=2), store=store, keys=[KEY], rate_limit=None)) as url:
        with httpx.Client(timeout=10) as h:
            with h.stream("POST", url + "/chat/completions", headers=AUTH,
                          json={"messages": [{"role": "user", "content": Q}], "stream": True}) as r:
                lines = r.iter_lines()
                first = json.loads(next(l for l in lines if l.startswith("data: "))[6:])
                assert first["llmops"]["mode"] == "streaming"
        assert gen.closed.wait(5), "generation went on after the client left"
        time.sleep(0.2)
        assert gen.produced < 200
        deadline = time.time() + 5
        while store.get(first["id"]) is None and time.time() < deadline: time.sleep(0.05)
    row = store.get(first["id"])
    assert row is not None and row["status"] == "error", row
    meta = row["meta"] if isinstance(row["meta"], dict) else json.loads(row["meta"])
    assert meta.get("client_gone") is True and meta.get("stream") is True
