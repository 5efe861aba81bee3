"Tools over structured data: the sample orders database, schema validation, the SQL guards, parsing and the router."
import csv, json, shutil, sqlite3

import pytest

from llmops_nb.core import digest
from llmops_nb.corpus import sample_dir
from llmops_nb.data import DataError
from llmops_nb.tools import (ORDERS_SOURCES, ReadOnlyDB, Tool, ToolCall, ToolError, ToolResult, ToolRouter, ToolSet,
                             default_router, evaluate_router, load_router_rows, order_tools, orders_source_dir,
                             parse_tool_calls, read_orders_source, router_train_path, sample_orders_db)

INJECTIONS = ["ORD-10035' OR '1'='1", "ORD-10035; DROP TABLE orders", "'; DELETE FROM orders; --",
              "ORD-10035\n", "ORD-10035\x00", "ORD-1003%", "ORD-10035 UNION SELECT email FROM customers"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return sample_orders_db(tmp_path_factory.mktemp("orders") / "orders.sqlite")


@pytest.fixture(scope="module")
def tools(db):
    return order_tools(db)


@pytest.fixture(scope="module")
def router(db):
    return default_router(db)


def copy_sources(tmp_path, file=None, old=None, new=None):
    "The sample sources copied to tmp_path, with `old` replaced by `new` once in `file`."
    for n in ORDERS_SOURCES:
        shutil.copy(orders_source_dir() / n, tmp_path / n)
    if file:
        text = (tmp_path / file).read_text()
        assert old in text
        (tmp_path / file).write_text(text.replace(old, new, 1))
    return tmp_path


# --- the database -------------------------------------------------------------------------------------------------

def test_db_contents_match_the_sample_company(db):
    con = sqlite3.connect(db)
    statuses = dict(con.execute("SELECT status, count(*) FROM orders GROUP BY status"))
    assert set(statuses) == {"placed", "paid", "shipped", "delivered", "returned", "cancelled", "refunded"}
    assert 40 <= sum(statuses.values()) <= 80 and 15 <= con.execute("SELECT count(*) FROM products").fetchone()[0] <= 30
    catalog = {r["id"]: r for r in csv.DictReader(open(sample_dir() / "products" / "catalog.csv", encoding="utf-8"))}
    for sku, name, eur, usd in con.execute("SELECT sku, name, price_eur, price_usd FROM products"):
        assert (name, eur, usd) == (catalog[sku]["title"], float(catalog[sku]["price_eur"]),
                                    float(catalog[sku]["price_usd"]))
    carriers = dict(con.execute("SELECT currency, group_concat(DISTINCT carrier) FROM orders WHERE carrier IS NOT NULL"
                                " GROUP BY currency"))
    assert carriers == {"EUR": "DHL", "USD": "UPS"}  # Leipzig ships with DHL, Columbus with UPS
    emails = [e for (e,) in con.execute("SELECT email FROM customers")]
    assert emails and all(e.endswith(("@example.com", "@example.org")) for e in emails)


def test_db_build_is_deterministic_and_cached(tmp_path, db):
    a, b = sample_orders_db(tmp_path / "a.sqlite"), sample_orders_db(tmp_path / "b.sqlite")
    assert a.read_bytes() == b.read_bytes() == db.read_bytes()
    mtime = a.stat().st_mtime_ns
    assert sample_orders_db(a).stat().st_mtime_ns == mtime  # up to date: not rebuilt
    (tmp_path / "src").mkdir()
    src = copy_sources(tmp_path / "src", "products.csv", "39.90", "42.90")
    rebuilt = sample_orders_db(a, src)
    assert digest(rebuilt) != digest(b)
    assert ReadOnlyDB(rebuilt, ["products"]).query("SELECT price_eur FROM products WHERE sku = ?",
                                                   ("KHA-KT-100",))[0] == [{"price_eur": 42.9}]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file


def test_db_default_location_is_the_project_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_CACHE_DIR", str(tmp_path / "cache"))
    p = sample_orders_db()
    assert p == tmp_path / "cache" / "tools" / "sample_orders.sqlite" and p.is_file()


def test_db_refuses_to_overwrite_a_foreign_file(tmp_path):
    (tmp_path / "mine.sqlite").write_text("not a database")
    with pytest.raises(FileExistsError, match="not a sample orders database"):
        sample_orders_db(tmp_path / "mine.sqlite")


@pytest.mark.parametrize("file,old,new,where", [
    ("orders.jsonl", '"status": "delivered"', '"status": "lost"', "orders.jsonl:1: status"),
    ("orders.jsonl", '"total": 52.8', '"total": 5.0', "orders.jsonl:1: total"),
    ("orders.jsonl", '"sku": "KHA-BL-200"', '"sku": "KHA-XX-000"', "orders.jsonl:1: items: unknown sku"),
    ("orders.jsonl", '"delivered_at": "2026-03-09"', '"delivered_at": "2026-03-01"', "orders.jsonl:1: dates out of"),
    ("orders.jsonl", '"qty": 1', '"qty": "one"', "orders.jsonl:1: items.0.qty"),
    ("orders.jsonl", '"order_id": "ORD-10002"', '"order_id": "ORD-10001"', "orders.jsonl:2: duplicate order_id"),
    ("orders.jsonl", '"currency": "EUR"', '"currency": "EUR", "note": "x"', "orders.jsonl:1: row: Additional"),
    ("products.csv", "39.90", "cheap", "products.csv:2: price_eur"),
    ("products.csv", "KHA-KT-150,", "KT150,", "products.csv:3: sku"),
    ("customers.csv", ",gold\n", ",platinum\n", "customers.csv:2: loyalty_tier"),
    ("customers.csv", "customer_id,name", "id,name", "customers.csv:1: header"),
])
def test_malformed_source_rows_name_file_and_line(tmp_path, file, old, new, where):
    with pytest.raises(DataError, match=where.replace(".", r"\.").replace("(", r"\(")):
        read_orders_source(copy_sources(tmp_path, file, old, new))


def test_truncated_or_missing_sources(tmp_path):
    src = copy_sources(tmp_path)
    text = (src / "orders.jsonl").read_text()
    (src / "orders.jsonl").write_text(text[: len(text) - 40])
    with pytest.raises(DataError, match=r"orders\.jsonl:60: malformed JSON"):
        read_orders_source(src)
    (src / "schema.sql").unlink()
    with pytest.raises(FileNotFoundError, match="missing schema.sql"):
        sample_orders_db(tmp_path / "x.sqlite", src)


# --- tool interface and validation --------------------------------------------------------------------------------

@pytest.mark.parametrize("args,msg", [
    ({}, "'order_id' is a required property"),
    ({"order_id": 10035}, "order_id: 10035 is not of type 'string'"),
    ({"order_id": None}, "is not of type 'string'"),
    ({"order_id": "ORD-1"}, "does not match"),
    ({"order_id": "ORD-10035" + "9" * 5000}, "order_id:"),
    ({"order_id": "ORD-10035", "sql": "SELECT 1"}, "Additional properties are not allowed"),
    ("[]", "must be a JSON object"),
    ('{"order_id": ', "not valid JSON"),
    ("x" * 9000, "limit 8192"),
])
def test_bad_arguments_are_refused_with_the_argument_named(tools, args, msg):
    res = tools.run(ToolCall("order_status", args) if isinstance(args, dict) else
                    {"function": {"name": "order_status", "arguments": args}})
    assert (res.ok, res.kind, res.rows) == (False, "bad_arguments", [])
    assert msg in res.error and res.error.startswith(("order_status", "tool call order_status"))


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_strings_are_refused_by_the_schema(tools, value):
    seen = []
    spy = Tool("order_status", "", tools.get("order_status").parameters,
               lambda order_id: seen.append(order_id) or [])
    res = spy.run({"order_id": value})
    assert res.kind == "bad_arguments" and seen == []  # the function never saw it
    with pytest.raises(ToolError) as e:
        spy.validate(json.dumps({"order_id": value}))
    assert e.value.kind == "bad_arguments" and e.value.tool == "order_status"


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_strings_would_only_be_bound_values(db, value):
    "Even past the schema, an argument is a parameter of fixed SQL: it matches nothing and changes nothing."
    ro = ReadOnlyDB(db, ["orders"])
    assert ro.query("SELECT order_id FROM orders WHERE order_id = ?", (value,)) == ([], False)
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 60


def test_good_calls_return_the_order_and_the_price(tools):
    res = tools.run(ToolCall("order_status", {"order_id": "ORD-10035"}))
    assert res.ok and not res.truncated and res.ms >= 0
    row = res.rows[0]
    assert (row["status"], row["carrier"], row["shipped_at"]) == ("shipped", "DHL", "2026-03-18")
    assert [i["sku"] for i in row["items"]] == ["KHA-BL-900P", "KHA-AC-010"] and "delivered_at" not in row
    assert not {"customer_id", "name", "email"} & set(row)
    price = tools.run({"id": "c1", "type": "function",
                       "function": {"name": "product_price", "arguments": '{"sku": "KHA-CM-700P"}'}})
    assert price.call.id == "c1" and price.rows == [{"sku": "KHA-CM-700P", "name": "Kestrel Pro Barista Bean-to-Cup",
                                                     "category": "coffee", "price_eur": 649.0,
                                                     "price_usd": 699.0, "in_stock": False}]
    assert "in_stock: false" in price.text() and "649.00" in price.text()
    assert tools.run(ToolCall("order_status", {"order_id": "ORD-99999"})).text().endswith("no matching record")


def test_toolcall_openai_round_trip_and_deterministic_id():
    c = ToolCall("order_status", {"order_id": "ORD-10035"})
    d = c.to_openai()
    assert d["type"] == "function" and json.loads(d["function"]["arguments"]) == c.arguments
    assert d["id"] == ToolCall("order_status", {"order_id": "ORD-10035"}).to_openai()["id"]
    assert ToolCall.from_openai(d) == ToolCall("order_status", c.arguments, d["id"])
    with pytest.raises(ToolError, match="expected"):
        ToolCall.from_openai({"function": "order_status"})


def test_toolset_specs_digest_unknown_and_client_tools(tools, tmp_path):
    assert tools.names == ["order_status", "product_price"] and "order_status" in tools
    assert [s["function"]["name"] for s in tools.specs()] == tools.names
    assert tools.digest == order_tools(sample_orders_db(tmp_path / "o.sqlite")).digest and len(tools.digest) == 64
    res = tools.run(ToolCall("delete_order", {"order_id": "ORD-10035"}))
    assert (res.ok, res.kind) == (False, "unknown_tool") and "order_status, product_price" in res.error
    with pytest.raises(ToolError) as e:
        tools.get("nope")
    assert e.value.kind == "unknown_tool"
    client = ToolSet.from_openai(tools.specs())
    assert client.digest == tools.digest and client.run(ToolCall("product_price", {"sku": "KHA-KT-100"})).kind == \
        "refused"
    with pytest.raises(ValueError, match=r"tools\[1\]\.function: .*valid JSON Schema"):
        ToolSet.from_openai([tools.specs()[0], {"type": "function", "function": {
            "name": "x", "parameters": {"type": "object", "properties": {"a": {"type": "bogus"}}}}}])
    with pytest.raises(ValueError, match=r"tools\[0\]"):
        ToolSet.from_openai([{"type": "retrieval"}])
    with pytest.raises(TypeError):
        tools.run("order_status")


def test_a_failing_function_never_raises():
    t = Tool("flaky", "", {"type": "object"}, lambda: (_ for _ in ()).throw(RuntimeError("disk on fire")))
    res = t.run({})
    assert (res.ok, res.kind) == (False, "failed") and "disk on fire" in res.error
    assert ToolResult(res.call, False, error=res.error).text().startswith("flaky() failed")


# --- the guards ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "INSERT INTO products VALUES ('KHA-XX-001', 'x', 'x', 1, 1, 1)", "UPDATE orders SET status = 'refunded'",
    "DELETE FROM orders", "DROP TABLE orders", "CREATE TABLE t (a)", "PRAGMA table_info(orders)",
    "ATTACH DATABASE ':memory:' AS x", "SELECT email FROM customers", "SELECT value FROM meta",
    "SELECT name FROM sqlite_master", "SELECT o.order_id FROM orders o JOIN customers c USING (customer_id)",
    "SELECT load_extension('x')", "SELECT 1; DELETE FROM orders",
])
def test_authorizer_refuses_writes_other_tables_and_functions(db, sql):
    ro = ReadOnlyDB(db, ["orders", "order_items", "products"])
    with pytest.raises(ToolError) as e:
        ro.query(sql)
    assert e.value.kind == "refused", e.value
    assert sqlite3.connect(db).execute("SELECT count(*) FROM orders").fetchone()[0] == 60


def test_connection_is_read_only_even_without_the_authorizer(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("DELETE FROM orders")


def test_row_limit_truncates_or_raises(db):
    ro = ReadOnlyDB(db, ["orders"], row_limit=5)
    rows, truncated = ro.query("SELECT order_id FROM orders ORDER BY order_id")
    assert len(rows) == 5 and truncated
    assert ro.query("SELECT order_id FROM orders WHERE status = ?", ("placed",)) == (
        [{"order_id": o} for o in ("ORD-10012", "ORD-10017", "ORD-10026", "ORD-10030", "ORD-10037")], False)
    with pytest.raises(ToolError) as e:
        ro.query("SELECT order_id FROM orders", on_overflow="error")
    assert e.value.kind == "too_many_rows"
    res = order_tools(db, row_limit=2).run(ToolCall("order_status", {"order_id": "ORD-10033"}))
    assert res.ok and res.truncated and len(res.rows[0]["items"]) == 2 and "row limit" in res.text()


def test_timeout_stops_a_slow_query(db):
    ro = ReadOnlyDB(db, ["order_items"], timeout_s=0.05)
    with pytest.raises(ToolError) as e:
        ro.query("SELECT a.sku FROM order_items a, order_items b, order_items c, order_items d "
                 "WHERE a.qty + b.qty + c.qty + d.qty > 100")
    assert e.value.kind == "timeout" and "0.05 s" in str(e.value)


@pytest.mark.parametrize("kw,msg", [({"row_limit": 0}, "row_limit"), ({"row_limit": True}, "row_limit"),
                                    ({"timeout_s": -1}, "timeout_s"), ({"timeout_s": float("nan")}, "timeout_s")])
def test_guard_settings_are_checked(db, kw, msg):
    with pytest.raises(ValueError, match=msg):
        ReadOnlyDB(db, ["orders"], **kw)


# --- parsing model output -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,calls", [
    ('<tool_call>{"name": "order_status", "arguments": {"order_id": "ORD-10001"}}</tool_call>',
     [ToolCall("order_status", {"order_id": "ORD-10001"})]),
    ('I will look it up.\n<tool_call>\n{"name": "product_price", "arguments": "{\\"sku\\": \\"KHA-KT-100\\"}"}\n',
     [ToolCall("product_price", {"sku": "KHA-KT-100"})]),  # JSON-string arguments, unclosed tag
    ('```json\n{"name": "order_status", "parameters": {"order_id": "ORD-10002"}}\n```',
     [ToolCall("order_status", {"order_id": "ORD-10002"})]),
    ('{"tool_calls": [{"id": "a", "type": "function", "function": {"name": "x", "arguments": "{}"}}]}',
     [ToolCall("x", {})]),
    ('<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": {}}</tool_call>',
     [ToolCall("a"), ToolCall("b")]),
    ("Your order ORD-10001 was delivered on 9 March.", []),
    ('<tool_call>{"name": "order_status", "arguments": {"order_id": </tool_call>', []),
    ('{"name": "drop table", "arguments": {}}', []),
    ('{"name": "x", "arguments": [1, 2]}', []),
    ("", []),
])
def test_parse_tool_calls(text, calls):
    assert parse_tool_calls(text) == calls


def test_parse_tool_calls_bad_and_huge_input():
    with pytest.raises(TypeError):
        parse_tool_calls(b"<tool_call>")
    assert parse_tool_calls("[" * 100_000) == [] and parse_tool_calls("[" * 5000 + "]" * 5000) == []
    assert parse_tool_calls("x" * 1_000_000 + '{"name": "a", "arguments": {}}') == []  # past the scan limit


# --- the router ---------------------------------------------------------------------------------------------------

def test_router_accuracy_floor_on_the_held_out_questions(router, tools):
    rows = load_router_rows(orders_source_dir() / "router_heldout.jsonl")
    train = {r["question"].lower() for r in load_router_rows(router_train_path())}
    assert len(rows) >= 60 and not train & {r["question"].lower() for r in rows}  # really held out
    m = evaluate_router(router, rows, tools)
    assert m["tool_accuracy"] >= 0.9 and m["args_accuracy"] >= 0.9, m["misses"]


def test_router_hard_negatives_and_arguments(router, tools):
    assert router.decide("What is your order cancellation policy?", tools) is None
    assert router.decide("What's the warranty on the KHA-BL-900P?", tools) is None
    assert router.decide("How much does express shipping cost?", tools) is None
    assert router.decide("Can I still cancel order #10030?", tools) == ToolCall("order_status",
                                                                                {"order_id": "ORD-10030"})
    assert router.decide("how much is the pro vortx blender", tools) == ToolCall("product_price",
                                                                                {"sku": "KHA-BL-900P"})
    missing = router.decide("Is my order on its way?", tools)
    assert missing == ToolCall("order_status", {}) and "required property" in tools.run(missing).error
    assert router.decide("Where is ORD-10035?", ToolSet([tools.get("product_price")])) is None


def test_router_empty_huge_and_wrong_inputs(router, tools):
    assert router.decide("", tools) is None and router.decide(" \n\t", tools) is None
    huge = "where is ORD-10035? " + "I really need it for my mother's birthday. " * 30_000 + "ORD-10001"
    assert router.decide(huge, tools) == router.decide(huge[:4000], tools) == ToolCall("order_status",
                                                                                       {"order_id": "ORD-10035"})
    with pytest.raises(TypeError):
        router.decide(None, tools)
    with pytest.raises(TypeError):
        router.decide("hi", tools.specs())


def test_router_is_deterministic(tools):
    rows = load_router_rows(router_train_path())
    a, b = ToolRouter(rows, {"KHA-KT-100": "Kestrel Brisk 1.7L Electric Kettle"}), ToolRouter(rows, {})
    qs = [r["question"] for r in load_router_rows(orders_source_dir() / "router_heldout.jsonl")]
    again = ToolRouter(rows, {"KHA-KT-100": "Kestrel Brisk 1.7L Electric Kettle"})
    assert [a.predict(q) for q in qs] == [again.predict(q) for q in qs]
    assert b.decide("price of KHA-KT-100", tools) == ToolCall("product_price", {"sku": "KHA-KT-100"})


class Scripted:
    "A generator that always writes `text`."

    def __init__(self, text):
        self.text, self.prompts = text, []

    def generate(self, prompt, **kw):
        self.prompts.append(prompt)
        return type("G", (), {"text": self.text})()


def test_model_tool_call_wins_when_valid_else_the_router(router, tools):
    g = Scripted('<tool_call>{"name": "order_status", "arguments": {"order_id": "ORD-10001"}}</tool_call>')
    r = router.route("Where is ORD-10035?", tools, g)
    assert (r.source, r.call) == ("model", ToolCall("order_status", {"order_id": "ORD-10001"}))
    system = g.prompts[0][0]["content"]
    assert "<tool_call>" in system and '"order_status"' in system and "^ORD-[0-9]{5}$" in system
    for text in ('<tool_call>{"name": "order_status", "arguments": {"order_id": "1; DROP"}}</tool_call>',
                 '<tool_call>{"name": "refund_everything", "arguments": {}}</tool_call>', "NO_TOOL", ""):
        r = router.route("Where is ORD-10035?", tools, Scripted(text))
        assert (r.source, r.call) == ("router", ToolCall("order_status", {"order_id": "ORD-10035"})), text


def test_router_rows_file_errors(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"question": "hi", "tool": null}\n{"question": "x", "tool": 3}\n')
    with pytest.raises(DataError, match=r"r\.jsonl:2"):
        load_router_rows(p)
    p.write_text("")
    with pytest.raises(DataError, match="no rows"):
        load_router_rows(p)


def test_each_run_is_a_span_without_argument_values_unless_capture_is_on(tools, monkeypatch):
    import llmops_nb.tools as mod

    spans = []
    monkeypatch.setattr(mod, "start_span", lambda name, attrs=None, parent=None: spans.append([name, parent]) or
                        spans[-1])
    monkeypatch.setattr(mod, "end_span", lambda sp, error=None, attributes=None: sp.extend([error, attributes]))
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    tools.run(ToolCall("order_status", {"order_id": "ORD-10035"}), parent="root")
    tools.run(ToolCall("order_status", {"order_id": "ORD-1"}))
    (name, parent, error, attrs), (_, _, error2, attrs2) = spans
    assert (name, parent, error) == ("tool order_status", "root", None)
    assert attrs["gen_ai.tool.name"] == "order_status" and attrs["llmops.tool.ok"] and attrs["llmops.tool.rows"] == 1
    assert attrs["llmops.tool.argument_names"] == ["order_id"] and "ORD-10035" not in json.dumps(attrs)
    assert "does not match" in error2 and attrs2["llmops.tool.error_kind"] == "bad_arguments"
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    tools.run(ToolCall("order_status", {"order_id": "ORD-10035"}))
    assert "ORD-10035" in spans[-1][3]["llmops.tool.arguments"]
