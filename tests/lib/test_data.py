"llmops_nb.data through the installed package: loading, cleaning, dedupe, chunking, splitting, datasets, SFT rows."
import json, os, warnings
from dataclasses import asdict
from pathlib import Path
import pytest
from conftest import ROOT
from llmops_nb.data import (DataError, Document, build_sft_dataset, chunk, clean_documents, clean_text, dedupe, deprioritize,
                            embedding_tokenizer, html_to_text, load_dataset, load_documents, save_dataset, split)

SAMPLE = ROOT / "data" / "sample"
NOT_DOCS = ["qa.jsonl", "sft.jsonl", "README.md", "eval/*"]


@pytest.fixture(scope="module")
def docs():
    return clean_documents(load_documents(SAMPLE, exclude=NOT_DOCS))


def test_sample_corpus_loads_with_stable_ids(docs):
    ids = [d.id for d in docs]
    assert len(ids) == len(set(ids)) and len(docs) >= 100
    types = {d.metadata["type"] for d in docs}
    assert types == {"markdown", "text", "html", "jsonl", "csv", "pdf", "docx"}
    qa = [json.loads(l) for l in (SAMPLE / "qa.jsonl").read_text().splitlines()]
    known = set(ids)
    missing = {i for q in qa for i in q["doc_ids"]} - known
    assert not missing, f"qa.jsonl refers to ids the loader does not produce: {sorted(missing)[:5]}"
    again = clean_documents(load_documents(SAMPLE, exclude=NOT_DOCS))
    assert [d.id for d in again] == ids                       # stable across loads


def test_encodings_and_noise(docs):
    by = {d.id: d for d in docs}
    assert "£" in by["memos/2026-01-08_uk_team_note.txt"].text
    assert by["memos/2026-01-08_uk_team_note.txt"].metadata["encoding"] == "cp1252"
    assert "\r" not in by["stores/store_hours.txt"].text
    assert not any("\u200b" in d.text for d in docs)
    html = by["products/html/kettle-pro-kt-300p.html"]
    assert html.text.startswith("# ") and "gtag" not in html.text and "cookie" not in html.text.lower()


@pytest.mark.parametrize("name, content, msg", [
    ("empty.md", b"", "empty.md: empty file"),
    ("blank.txt", b"   \n\n", "blank.txt: empty file"),
    ("nul.txt", b"abc\x00def", "nul.txt: binary content"),
    ("bad.jsonl", b'{"id": "a", "text": "ok"}\n{"id": "b", "text": ', "bad.jsonl:2: malformed JSON line"),
    ("list.jsonl", b'["not", "an", "object"]\n', "list.jsonl:1: a JSONL document must be an object"),
    ("notext.csv", b"id,body\n1,hello\n", "notext.csv:1: CSV header"),
    ("ragged.csv", b'id,text\n1,"a"\n2,"b",extra\n', "ragged.csv:3: 3 fields"),
    ("page.html", b"<html><body><nav>menu</nav><script>x()</script></body></html>", "page.html: no text content"),
    ("doc.pdfx", b"%PDF", "unsupported file type '.pdfx'"),
])
def test_bad_files_name_the_file(tmp_path, name, content, msg):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(DataError, match=msg.replace("(", r"\(").replace(".", r"\.")):
        load_documents(f)


def test_missing_huge_and_undecodable(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.md"):
        load_documents(tmp_path / "nope.md")
    big = tmp_path / "big.txt"
    big.write_bytes(b"word " * 10_000_000)                    # 50 MB
    with pytest.raises(DataError, match=r"big.txt: 50.0 MB is over max_bytes=20.0 MB"):
        load_documents(big)
    assert len(load_documents(big, max_bytes=60_000_000)[0].text) == 50_000_000
    junk = tmp_path / "junk.txt"
    junk.write_bytes(bytes(b for b in os.urandom(4000) if b) )
    with pytest.raises(DataError, match="junk.txt"):
        load_documents(junk)
    with pytest.raises(ValueError, match="no paths"):
        load_documents([])


def test_folder_skips_unsupported_with_warning(tmp_path):
    (tmp_path / "a.md").write_text("# A\n\ntext")
    (tmp_path / "b.bin").write_bytes(b"\x01\x02")
    with pytest.warns(UserWarning, match="b.bin"):
        d = load_documents(tmp_path)
    assert [x.id for x in d] == ["a.md"]


def test_clean_text_types_and_invisibles():
    assert clean_text("a\u200bb\u00a0c\t\td") == "ab c d"
    with pytest.raises(TypeError):
        clean_text(b"bytes")
    text, title = html_to_text("<title>T</title><main><h2>H</h2><p>x<br>y</p></main>")
    assert (text, title) == ("## H\n\nx\ny", "T")


def test_dedupe_finds_planted_duplicates(docs):
    kept, report = dedupe(docs, prefer=deprioritize("archive/", "draft", "copy", "final", "-spring", "_v2"))
    dropped = {r["id"]: r for r in report}
    assert dropped["policies/returns_copy.md"] == {"id": "policies/returns_copy.md", "duplicate_of": "policies/returns.md",
                                                   "kind": "exact", "similarity": 1.0}
    assert dropped["support/troubleshooting_air_fryer_FINAL.md"]["kind"] == "exact"
    for near in ["policies/archive/warranty_2024.md", "policies/shipping_draft.md", "products/html/airfryer-aircrisp-af-550-spring.html",
                 "memos/2026-02-05_austin_store_opening_v2.txt"]:
        assert dropped[near]["kind"] == "near", near
    assert len(report) <= 9                                    # nothing else is a duplicate
    assert [d.id for d in kept] == [d.id for d in docs if d.id not in dropped]


def test_chunks_respect_limits_and_offsets(docs):
    tok = embedding_tokenizer()
    chunks = chunk(docs[:40], max_tokens=96, overlap=16, tokenizer=tok)
    by = {d.id: d for d in docs}
    for c in chunks:
        assert by[c.doc_id].text[c.start:c.end] == c.text
        assert len(tok.encode(c.text, add_special_tokens=False).ids) <= 96
        assert c.n_tokens <= 96
    covered = {}
    for c in chunks:
        covered.setdefault(c.doc_id, []).append((c.start, c.end))
    for doc_id, spans in covered.items():           # every non-blank character of a document is in some chunk
        text = by[doc_id].text
        inside = set()
        for s, e in spans:
            inside.update(range(s, e))
        assert all(i in inside for i, ch in enumerate(text) if not ch.isspace()), doc_id
    with pytest.raises(ValueError):
        chunk(docs[:1], max_tokens=0)
    assert chunk([], tokenizer=tok) == []


def test_split_is_deterministic_and_grouped():
    rows = [{"doc": f"d{i % 17}", "n": i} for i in range(170)]
    tr, va = split(rows, val_frac=0.25, seed=3, group_by="doc")
    assert len(tr) + len(va) == 170 and {r["doc"] for r in tr}.isdisjoint({r["doc"] for r in va})
    assert split(rows, 0.25, seed=3, group_by=lambda r: r["doc"]) == (tr, va)
    with pytest.raises(ValueError):
        split(rows, val_frac=-0.1)


def test_dataset_roundtrip_digest_and_tamper(tmp_path, docs):
    rows = [asdict(c) for c in chunk(docs[:5])]
    a = save_dataset(rows, tmp_path / "a", sources=[SAMPLE / "policies" / "returns.md"], run_id="r1")
    b = save_dataset(rows, tmp_path / "b")
    assert a.digest == b.digest and len(a.digest) == 64
    back = load_dataset(tmp_path / "a")
    assert back.rows == rows and back.manifest["rows"] == len(rows) and back.manifest["run_id"] == "r1"
    assert back.to_pandas().shape[0] == len(rows) and back.to_hf().num_rows == len(rows)
    (tmp_path / "a" / "data.parquet").write_bytes((tmp_path / "a" / "data.parquet").read_bytes()[:-40] + b"\0" * 40)
    with pytest.raises(DataError, match="data.parquet"):
        load_dataset(tmp_path / "a")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    m["digest"] = "0" * 64
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="does not match the manifest"):
        load_dataset(tmp_path / "b")
    assert load_dataset(tmp_path / "b", verify=False).rows == rows


def test_failed_save_keeps_previous_version(tmp_path):
    save_dataset([{"a": 1}], tmp_path / "d")
    with pytest.raises(DataError):
        save_dataset([{"a": 1}, {"a": "two"}], tmp_path / "d")
    assert load_dataset(tmp_path / "d").rows == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_sft_rows(tmp_path):
    rows = build_sft_dataset(SAMPLE / "sft.jsonl")
    assert len(rows) >= 200 and all(r["template_version"] is None for r in rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
                   '{"id": "x7", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2 \(id x7\): turn 1: empty assistant message"):
        build_sft_dataset(bad)
    with pytest.raises(DataError, match="role"):
        build_sft_dataset([{"messages": [{"role": "human", "content": "q"}]}])
    with pytest.raises(DataError, match="no conversations"):
        build_sft_dataset([])
