"Tools in the OpenAI-compatible endpoint through the installed package and the `openai` client: a call handed back (also streamed), the answer from its result, the server's own tools kept in the llmops field, and bad tools refused with a 400 naming the field."
import json, re
import openai
import pytest
from fastapi.testclient import TestClient
from llmops_nb.generate import Generation
from llmops_nb.pipeline import RAGPipeline
from llmops_nb.retrieval import VectorStore
from llmops_nb.serve import create_app
from llmops_nb.tools import order_tools, sample_orders_db

KEY = "tools-test-key-0123456789abcdef"
ORDER_TOOL = {"type": "function", "function": {
    "name": "order_status", "description": "The status of a customer's order, by its id (ORD-nnnnn).",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "pattern": "^ORD-[0-9]{5}$"}},
                   "required": ["order_id"], "additionalProperties": False}}}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
Q = "Where is my order ORD-10022?"


class Model:
    "Writes a <tool_call> when asked to choose a tool for a weather question; else answers from the order passage it is shown."
    def info(self): return {"backend": "scripted", "model": "scripted-1", "model_digest": "0" * 64}
    def generate(self, msgs, **kw):
        prompt = json.dumps(msgs)
        if "You can call these tools" in prompt:
            text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' if "weather" in prompt.lower() and "Paris" in prompt else "NO_TOOL"
        elif m := re.search(r"\[(\d)\][^\[]*order_status ORD-10022", prompt):
            text = f"Order ORD-10022 has shipped [{m.group(1)}]."
        else:
            text = "I don't know."
        return Generation(text, "stop", 10, len(text.split()), 0.0, "scripted-1")


@pytest.fixture(scope="module")
def kb():
    s = VectorStore()
    s.add(["returns#0"], ["Unused items can be returned within 30 days of delivery for a full refund."], [{"title": "Returns"}])
    return s


def client_for(app):
    return openai.OpenAI(base_url="http://testserver/v1", api_key=KEY, max_retries=0,
                         http_client=TestClient(app, headers={"Authorization": f"Bearer {KEY}"}))


def test_a_client_tool_call_round_trip(kb):
    client = client_for(create_app(RAGPipeline(kb, Model(), k=1), keys=[KEY], rate_limit=None))
    first = client.chat.completions.create(model="llmops", messages=[{"role": "user", "content": Q}], tools=[ORDER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == ("function", "order_status", {"order_id": "ORD-10022"})
    assert first.model_extra["llmops"]["tool_calls"][0]["side"] == "client"
    msgs = [{"role": "user", "content": Q}, choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"order_id": "ORD-10022", "status": "shipped", "carrier": "DHL"})}]
    second = client.chat.completions.create(model="llmops", messages=msgs, tools=[ORDER_TOOL])
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content == "Order ORD-10022 has shipped [1]."
    assert second.choices[0].message.tool_calls is None
    assert second.model_extra["llmops"]["citations"][0]["title"] == "order_status ORD-10022"
    none = client.chat.completions.create(model="llmops", messages=[{"role": "user", "content": Q}], tools=[ORDER_TOOL], tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and none.choices[0].message.tool_calls is None


def test_the_model_s_own_tool_call_is_streamed(kb):
    client = client_for(create_app(RAGPipeline(kb, Model(), k=1), keys=[KEY], rate_limit=None))
    chunks = list(client.chat.completions.create(model="llmops", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                                                 tools=[ORDER_TOOL, WEATHER_TOOL], stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [(0, "get_weather", {"city": "Paris"})]
    assert calls[0].id.startswith("call_") and chunks[-1].choices[0].finish_reason == "tool_calls"
    plain = list(client.chat.completions.create(model="llmops", messages=[{"role": "user", "content": "How long is the return window?"}],
                                                tools=[ORDER_TOOL], stream=True))         # no tool fits: a streamed answer
    assert not any(c.choices[0].delta.tool_calls for c in plain if c.choices) and plain[-1].choices[0].finish_reason == "stop"


def test_server_tools_stay_in_the_llmops_field(kb, tmp_path):
    rag = RAGPipeline(kb, Model(), k=1, tools=order_tools(sample_orders_db(tmp_path / "o.sqlite")))
    client = client_for(create_app(rag, keys=[KEY], rate_limit=None))
    r = client.chat.completions.create(model="llmops", messages=[{"role": "user", "content": Q}])
    assert r.choices[0].message.content == "Order ORD-10022 has shipped [1]." and r.choices[0].message.tool_calls is None
    ext = r.model_extra["llmops"]
    assert ext["tool_calls"][0]["side"] == "server" and ext["tool_calls"][0]["ok"] is True and ext["citations"][0]["title"] == "order_status ORD-10022"


@pytest.mark.parametrize("extra,field", [
    ({"tools": [{**ORDER_TOOL, "function": {**ORDER_TOOL["function"], "parameters": {"type": "object", "properties": {"order_id": {"type": 7}}}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
    ({"tools": [ORDER_TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [ORDER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": Q}, {"role": "tool", "tool_call_id": "call_x", "content": "{}"}]}, "messages[1].tool_call_id"),
])
def test_bad_tools_are_a_400_naming_the_field(kb, extra, field):
    client = client_for(create_app(RAGPipeline(kb, Model(), k=1), keys=[KEY], rate_limit=None))
    body = {"model": "llmops", "messages": [{"role": "user", "content": Q}], **extra}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**body)
    assert e.value.status_code == 400 and field in e.value.body["message"]
