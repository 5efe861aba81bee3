"Signals: labels and their agreement, the terminal and notebook labellers, online scoring, export to suites and SFT data, the CLI, bad input."
import argparse, hashlib, io, json, re, sqlite3, time
from pathlib import Path
import numpy as np
import pytest
from llmops_nb.data import load_dataset
from llmops_nb.tracestore import SCHEMA_VERSION, TraceStore, TraceStoreError
from llmops_nb.signals import (SignalError, add_label, add_scores, add_traces_cli, export_traces, in_sample, label_agreement,
                               label_candidates, label_queue, label_terminal, labels, score_traces, scores, trace_ids_of, traces_cli)
from llmops_nb.suites import load_suite

T0 = 1_800_000_000.0
RETURNS = "Unused items can be returned within 30 days of delivery for a full refund."


class HashEmbedder:
    "A stand-in embedder: bag of hashed words."
    def encode(self, texts):
        v = np.zeros((len(texts), 256), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()): v[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 256] += 1
        return v


def ctx(text): return {"contexts": [{"n": 1, "id": "returns#0", "title": "Returns", "text": text}]}


@pytest.fixture
def store(tmp_path):
    s = TraceStore(tmp_path / "traces.sqlite")
    rows = [("a", "How long is the return window for unused items?", "Unused items can be returned within 30 days of delivery [1].", 1.0),
            ("b", "Can I return a used kettle after three months?", "Yes, any item can be returned within 90 days [1].", -1.0),
            ("c", "Do you ship parcels to Mars?", "I don't know.", None),
            ("d", "Is the refund for returned items a full refund?", "Yes, a full refund [1].", None)]
    for i, (tid, q, a, fb) in enumerate(rows):
        s.record({"trace_id": tid, "ts": T0 + i, "status": "idk" if a.startswith("I don't") else "answered", "question": q, "answer": a,
                  "meta": ctx(RETURNS), "feedback_score": fb})
    yield s
    s.close()


def test_labels_are_appended_and_agreement_is_cohens_kappa(store):
    for tid, x, y in zip("abcd", ["good", "bad", "bad", "good"], ["good", "bad", "good", "good"]):
        add_label(store, tid, x, "ana"); add_label(store, tid, y, "ben")
    add_label(store, "b", "bad", "cai", correction="Only unused items, within 30 days.")
    agr = label_agreement(store)
    # ana vs ben on 4 traces: p_o = 3/4; ana good 2/4, ben good 3/4: p_e = .5*.75 + .5*.25 = .5; kappa = .5
    ab = next(p for p in agr["pairs"] if (p["a"], p["b"]) == ("ana", "ben"))
    assert ab["n"] == 4 and ab["agreement"] == 0.75 and ab["kappa"] == pytest.approx(0.5)
    assert agr["labellers"] == {"ana": 4, "ben": 4, "cai": 1} and agr["traces_multi"] == 4
    add_label(store, "c", "good", "ana")                       # a change of mind: appended, the latest counts
    assert [r["label"] for r in labels(store, trace_id="c", labeller="ana")] == ["bad", "good"]
    assert label_agreement(store)["pairs"][0]["agreement"] == 1.0
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6 and con.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 10


def test_bad_labels_name_what_was_wrong(store, tmp_path):
    with pytest.raises(SignalError, match="trace_id: 'zzz' is not in"): add_label(store, "zzz", "good", "ana")
    with pytest.raises(SignalError, match=r"label: expected one of \('good', 'bad'\)"): add_label(store, "a", "meh", "ana")
    with pytest.raises(SignalError, match="labeller: expected a non-empty string"): add_label(store, "a", "bad", " ")
    with pytest.raises(SignalError, match="label it 'bad'"): add_label(store, "a", "good", "ana", correction="better")
    with pytest.raises(SignalError, match="correction: 100,001 characters"): add_label(store, "a", "bad", "ana", correction="x" * 100_001)
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 20)
    with pytest.raises(TraceStoreError, match="junk.sqlite is not a SQLite database"): add_label(tmp_path / "junk.sqlite", "a", "bad", "ana")
    with pytest.raises(FileNotFoundError, match="store: .*missing.sqlite does not exist"): labels(tmp_path / "missing.sqlite")
    assert labels(store) == []


def test_terminal_labeller_reads_answers_from_a_stream(store):
    out = io.StringIO()
    got = label_terminal(store, "ana", input=io.StringIO("g\nx\nb\nc\nWe ship within the EU only.\n\n"), output=out)
    assert got == {"good": 1, "bad": 1, "corrected": 1, "skipped": 0, "shown": 4}          # the input ran out at the 4th trace
    first = [r["trace_id"] for r in labels(store, labeller="ana")]
    assert first[0] == "b" and "question: Can I return a used kettle" in out.getvalue() and "unknown answer 'x'" in out.getvalue()
    assert "[1] Returns: Unused items" in out.getvalue()                                      # the cited passage is shown
    assert labels(store, labeller="ana")[2]["correction"] == "We ship within the EU only."
    assert [r["trace_id"] for r in label_candidates(store, "ana")] == ["c"]                 # shown, never labelled


def test_notebook_queue_buttons_write_labels(store):
    q = label_queue(store, "ben", limit=3)
    order = [r["trace_id"] for r in q.rows]
    q.good.click(); q.skip.click()
    q.correction.value = "A full refund, yes."; q.correct.click()
    assert [(r["trace_id"], r["label"], r["correction"]) for r in labels(store, labeller="ben")] == \
           [(order[0], "good", None), (order[2], "bad", "A full refund, yes.")]
    assert q.current is None and q.bad.disabled and q.done == {"good": 1, "bad": 0, "corrected": 1, "skipped": 1}


def test_online_scoring_is_a_reproducible_sample_into_the_store(store, tmp_path):
    big = TraceStore(tmp_path / "big.sqlite")
    for i in range(200):
        big.record({"trace_id": f"r{i}", "ts": T0 + i, "status": "answered", "question": "How long is the return window?",
                    "answer": "Unused items can be returned within 30 days [1].", "meta": ctx(RETURNS)})
    res = score_traces(big, 0.2, embedder=HashEmbedder())
    picked = sorted({s["trace_id"] for s in scores(big)})
    assert picked == sorted(f"r{i}" for i in range(200) if in_sample(f"r{i}", 0.2)) and 20 <= res["sampled"] <= 60
    assert res["metrics"]["groundedness"] == {"mean": 1.0, "count": res["sampled"]} and res["candidates"] == 200
    assert score_traces(big, 0.2, embedder=HashEmbedder())["sampled"] == 0                   # already scored: nothing twice
    agg = big.aggregates()["online"]
    assert agg["groundedness"]["count"] == res["sampled"] and agg["answer_relevance"]["mean"] is not None
    df = big.frame()
    assert df["online_groundedness"].notna().sum() == res["sampled"]
    # the default store: the 90-days answer is the least grounded; idk answers get relevance but no groundedness
    score_traces(store, 1.0, embedder=HashEmbedder())
    g = {s["trace_id"]: s["value"] for s in scores(store, metric="groundedness")}
    assert set(g) == {"a", "b", "d"} and g["b"] < g["a"]
    with pytest.raises(SignalError, match="fraction: expected a number between 0 and 1"): score_traces(store, -0.1)
    with pytest.raises(SignalError, match=r"rows\[0\].value: expected a finite number"): add_scores(store, [{"trace_id": "a", "metric": "m", "value": "high"}])
    with pytest.raises(SignalError, match=r"trace id\(s\) \['nope'\] are not in"): add_scores(store, [{"trace_id": "nope", "metric": "m", "value": 1}])


def test_purge_drops_labels_and_scores_of_purged_traces(tmp_path):
    s = TraceStore(tmp_path / "p.sqlite")
    s.record({"trace_id": "old", "ts": time.time() - 40 * 86400, "question": "q", "answer": "a"}); s.record({"trace_id": "new", "question": "q", "answer": "a"})
    add_label(s, "old", "bad", "ana"); add_label(s, "new", "good", "ana")
    add_scores(s, [{"trace_id": "old", "metric": "m", "value": 0.1}, {"trace_id": "new", "metric": "m", "value": 0.9}])
    assert s.purge(older_than_days=30) == 1
    assert [l["trace_id"] for l in labels(s)] == ["new"] and [r["trace_id"] for r in scores(s)] == ["new"]


def test_a_v3_store_upgrades_to_the_current_schema(tmp_path):
    p = tmp_path / "v3.sqlite"
    TraceStore(p).close()
    c = sqlite3.connect(p)                                     # back to v3: no labels or scores (v4), no tenant column (v5), no resources or OTel ids (v6)
    v6 = [f"ALTER TABLE traces DROP COLUMN {col}" for col in ("cpu_ms", "rss_mb", "gpu_peak_mb", "otel_trace_id", "otel_span_id")]
    for stmt in ("DROP TABLE labels", "DROP TABLE scores", "DROP INDEX traces_tenant", "ALTER TABLE traces DROP COLUMN tenant", "DROP INDEX traces_otel",
                 *v6, "PRAGMA user_version=3"): c.execute(stmt)
    c.commit(); c.close()
    with TraceStore(p) as s:
        s.record({"trace_id": "x", "question": "q", "answer": "a"}, tenant="acme"); add_label(s, "x", "good", "ana", tenant="acme")
        assert labels(s)[0]["label"] == "good" and s.get("x")["tenant"] == "acme"


def test_export_suite_and_sft_with_lineage(store, tmp_path):
    add_label(store, "b", "bad", "ana", correction="Only unused items can be returned, within 30 days.")
    add_label(store, "a", "good", "ana"); add_label(store, "d", "bad", "ben")
    existing = tmp_path / "existing.jsonl"
    existing.write_text(json.dumps({"id": "x1", "messages": [{"role": "user", "content": "Is the refund for returned items a full refund?"},
                                                            {"role": "assistant", "content": "Yes."}]}) + "\n")
    ex = export_traces(store, to="suite", out=tmp_path / "ds", existing=[existing], pii="rules")
    cases = {r["trace_id"]: r for r in ex.rows}
    assert sorted(cases) == ["b", "c"] and ex.skipped == {"near-duplicate": 1}              # d repeats a training question
    assert cases["b"]["references"] == ["Only unused items can be returned, within 30 days."] and "idk" in cases["c"]["tags"]
    assert ex.path.parent == tmp_path / "ds" and ex.path.name.startswith("suite-")
    ds = load_dataset(ex.path)
    assert ds.manifest["extra"]["trace_ids"] == ["b", "c"] and trace_ids_of(ex.path) == ["b", "c"] and len(ds) == 2
    assert [c.id for c in load_suite(ex.path / "cases.jsonl").cases] == ["trace-b", "trace-c"]
    sft = export_traces(store, to="sft", out=tmp_path / "ds", pii="rules")
    conv = {r["trace_id"]: r for r in sft.rows}
    assert sorted(conv) == ["a", "b"] and conv["b"]["source"] == "corrected"
    assert conv["a"]["messages"] == [{"role": "user", "content": "How long is the return window for unused items?"},
                                     {"role": "assistant", "content": "Unused items can be returned within 30 days of delivery."}]
    assert trace_ids_of(sft.path) == ["a", "b"] and sft.path.name.startswith("sft-")
    assert export_traces(store, to="sft", out=tmp_path / "ds", pii="rules").path == sft.path       # same content, same folder


def test_export_redacts_pii_and_handles_empty_and_huge_input(tmp_path):
    s = TraceStore(tmp_path / "t.sqlite", mask_questions=False)
    with pytest.raises(ValueError): export_traces(s, to="suite", pii="nope")
    e = export_traces(s, to="suite", out=tmp_path / "ds")
    assert e.path is None and len(e) == 0 and "nothing to export: the store has no traces" in e.note
    s.record({"trace_id": "p", "status": "answered", "question": "Mail me at jane.doe@example.com: how long do refunds take?",
              "answer": "Five days.", "feedback_score": -1.0})
    s.record({"trace_id": "h", "status": "answered", "question": "why " * 5000, "answer": "No.", "feedback_score": -1.0})
    e = export_traces(s, to="suite", out=tmp_path / "ds", pii="full")
    assert [r["trace_id"] for r in e.rows] == ["p"] and e.skipped == {"too long": 1}
    assert "jane.doe" not in json.dumps(e.rows) and "<EMAIL>" in e.rows[0]["input"]
    for kw, msg in [({"to": "parquet"}, "to: expected 'suite' or 'sft'"), ({"min_score": float("nan")}, "min_score: expected a finite number"),
                    ({"existing": [tmp_path / "none.yaml"]}, "existing: .*none.yaml does not exist"), ({"max_chars": 0}, "max_chars: expected an int >= 1")]:
        with pytest.raises((SignalError, FileNotFoundError), match=msg): export_traces(s, pii="rules", **kw)


def test_cli_label_and_export(store, tmp_path, capsys, monkeypatch):
    ap = argparse.ArgumentParser(prog="llmops"); add_traces_cli(ap.add_subparsers(dest="cmd"))
    monkeypatch.setattr("sys.stdin", io.StringIO("b\n"))
    assert traces_cli(ap.parse_args(["traces", "label", "--store", str(store.path), "--labeller", "ana", "--limit", "1"])) == 0
    assert labels(store)[0]["labeller"] == "ana" and "bad 1" in capsys.readouterr().out
    a = ap.parse_args(["traces", "export", "--to", "suite", "--store", str(store.path), "--out", str(tmp_path / "cli"), "--pii", "rules", "--json"])
    assert traces_cli(a) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["rows"] >= 1 and Path(got["path"]).is_dir() and "b" in got["trace_ids"]
    assert traces_cli(ap.parse_args(["traces", "export", "--to", "sft", "--store", str(tmp_path / "nope.sqlite")])) == 2
    assert "--store: " in capsys.readouterr().err
    with pytest.raises(SystemExit): ap.parse_args(["traces", "export", "--to", "csv"])


def test_labels_respect_tenants_and_keep_the_traces_tenant(tmp_path):
    s = TraceStore(tmp_path / "t.sqlite")
    s.record({"trace_id": "acme-1", "status": "answered", "answer": "x"}, tenant="acme")
    s.record({"trace_id": "plain-1", "status": "answered", "answer": "y"})              # no tenant: the default one
    with pytest.raises(SignalError, match="'acme-1' is not in .* for tenant 'globex'"): add_label(s, "acme-1", "bad", "ana", tenant="globex")
    with pytest.raises(SignalError, match="for tenant 'acme'"): add_label(s, "plain-1", "good", "ana", tenant="acme")
    add_label(s, "acme-1", "good", "ana", tenant="acme"); add_label(s, "plain-1", "good", "ana", tenant="default"); add_label(s, "acme-1", "bad", "ben")
    got = sqlite3.connect(s.path).execute("SELECT trace_id, labeller, tenant FROM labels ORDER BY id").fetchall()
    assert got == [("acme-1", "ana", "acme"), ("plain-1", "ana", "default"), ("acme-1", "ben", "acme")]
    with pytest.raises(SignalError, match="tenant: expected a non-empty string"): add_label(s, "acme-1", "good", "ana", tenant=" ")
    with pytest.raises(SignalError, match="is not in"): add_label(s, "acme-\ud800", "good", "ana")   # a lone surrogate: no crash


def test_scores_with_lone_surrogates_are_stored_not_crashed(tmp_path):
    s = TraceStore(tmp_path / "t.sqlite")
    s.record({"trace_id": "t\ufffd", "status": "answered"})
    assert add_scores(s, [{"trace_id": "t\ud800", "metric": "m\udfff", "value": 0.5, "scorer": "j\ud800"}]) == 1   # the same id, made safe
    assert [(r["trace_id"], r["metric"], r["scorer"]) for r in scores(s)] == [("t\ufffd", "m\ufffd", "j\ufffd")]
