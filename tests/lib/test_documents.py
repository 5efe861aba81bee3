"PDF and Word ingestion through the installed package: pages as documents, failures by kind, page metadata in chunks."
import io, subprocess, sys, warnings, zipfile
from pathlib import Path
import pytest
from conftest import ROOT
from llmops_nb.data import (DataError, Document, DocumentError, DocumentList, chunk, clean_documents, clean_text,
                            embedding_tokenizer, load_documents, load_file, try_load_file)

SAMPLE = ROOT / "data" / "sample"


@pytest.fixture(scope="module")
def tok():
    return embedding_tokenizer()


def make_pdf(path: Path, pages: list, outline: bool = True, title: str = "") -> Path:
    "A PDF whose pages hold `pages` (lists of ('h1'|'h2'|'p', text)); headings bookmarked when `outline`."
    from fpdf import FPDF
    pdf = FPDF()
    pdf.set_title(title) if title else None
    for blocks in pages:
        pdf.add_page()
        for kind, text in blocks:
            if kind.startswith("h"):
                if outline:
                    pdf.start_section(text, level=int(kind[1]) - 1)
                pdf.set_font("Helvetica", "B", 20 if kind == "h1" else 15)
            else:
                pdf.set_font("Helvetica", "", 10)
            pdf.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))
    return path


def make_docx(path: Path, build) -> Path:
    import docx
    doc = docx.Document()
    build(doc)
    doc.save(str(path))
    return path


def test_sample_pdf_pages_titles_and_heading_paths():
    pages = load_file(SAMPLE / "policies/recycling_takeback.pdf", "policies/recycling_takeback.pdf")
    assert [d.id for d in pages] == [f"policies/recycling_takeback.pdf#p{i}" for i in (1, 2, 3)]
    assert {d.metadata["title"] for d in pages} == {"Recycling and Take-Back of Old Appliances"}
    assert [d.metadata["page_count"] for d in pages] == [3, 3, 3] and {d.metadata["type"] for d in pages} == {"pdf"}
    assert pages[0].text.startswith("# Recycling and Take-Back of Old Appliances\n\nEffective 1 January 2026.")
    assert pages[2].metadata["heading_path"] == ["Recycling and Take-Back of Old Appliances", "With an online order"]
    for d in pages:
        assert clean_text(d.text) == d.text                     # cleaning changes no page


def test_ids_and_text_stable_across_loads():
    a = load_documents([SAMPLE / "support/escalation_matrix.pdf", SAMPLE / "support/agent_guidelines.docx"])
    b = load_documents([SAMPLE / "support/escalation_matrix.pdf", SAMPLE / "support/agent_guidelines.docx"])
    assert [(d.id, d.text) for d in a] == [(d.id, d.text) for d in b]
    assert [d.id for d in a][:3] == ["escalation_matrix.pdf#p1", "escalation_matrix.pdf#p2", "agent_guidelines.docx#p1"]


def test_pdf_table_rows_and_wrapped_cells():
    p2 = load_file(SAMPLE / "support/escalation_matrix.pdf")[1].text
    assert "Queue | When | Target response" in p2
    assert "Payments | refund not received after the published time, double charges, chargebacks, suspected fraud | 1 business day" in p2
    assert "Press office | journalists and influencers | same day" in p2


def test_pdf_headings_from_font_size_without_outline(tmp_path):
    f = make_pdf(tmp_path / "plain.pdf", [[("h1", "Kettle Guide"), ("p", "Fill the kettle with water."),
                                          ("h2", "Descaling"), ("p", "Descale monthly.")],
                                         [("p", "More about descaling on page two.")]], outline=False)
    pages = load_file(f)
    assert pages[0].text == "# Kettle Guide\n\nFill the kettle with water.\n\n## Descaling\n\nDescale monthly."
    assert pages[0].metadata["title"] == "Kettle Guide"              # no /Title: the first heading
    assert pages[1].metadata["heading_path"] == ["Kettle Guide", "Descaling"]


def test_blank_pages_are_skipped_and_keep_numbering(tmp_path):
    f = make_pdf(tmp_path / "gap.pdf", [[("p", "First page text.")], [], [("p", "Third page text.")]], title="Gappy")
    pages = load_file(f)
    assert [(d.id, d.metadata["page"], d.metadata["page_count"]) for d in pages] == [("gap.pdf#p1", 1, 3), ("gap.pdf#p3", 3, 3)]
    assert pages[0].metadata["title"] == "Gappy"


def test_encrypted_pdf(tmp_path):
    import pypdf
    src = make_pdf(tmp_path / "src.pdf", [[("p", "Secret terms.")]])
    w = pypdf.PdfWriter(clone_from=src)
    w.encrypt(user_password="pw", algorithm="AES-256")
    w.write(tmp_path / "locked.pdf")
    with pytest.raises(DocumentError, match="locked.pdf: password-protected PDF") as e:
        load_file(tmp_path / "locked.pdf")
    assert e.value.kind == "encrypted" and e.value.path.endswith("locked.pdf") and isinstance(e.value, DataError)
    w = pypdf.PdfWriter(clone_from=src)                      # owner password only: opens with the empty password
    w.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    w.write(tmp_path / "restricted.pdf")
    assert load_file(tmp_path / "restricted.pdf")[0].text == "Secret terms."


def test_scanned_pdf_says_no_ocr(tmp_path):
    from fpdf import FPDF
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (300, 120), "white")
    ImageDraw.Draw(img).text((10, 40), "A scanned receipt", fill="black")
    img.save(tmp_path / "scan.png")
    pdf = FPDF()
    for _ in range(2):
        pdf.add_page()
        pdf.image(str(tmp_path / "scan.png"), x=10, y=10, w=120)
    pdf.output(str(tmp_path / "scan.pdf"))
    docs, failure = try_load_file(tmp_path / "scan.pdf", "in/scan.pdf")
    assert docs == [] and failure["file"] == "in/scan.pdf" and failure["kind"] == "scanned"
    assert "2 of 2 page(s) are images only" in failure["error"] and "no OCR" in failure["error"]


@pytest.mark.parametrize("name, data, kind, msg", [
    ("cut.pdf", lambda: (SAMPLE / "policies/recycling_takeback.pdf").read_bytes()[:2500], "corrupt", "cut.pdf: corrupt"),
    ("junk.pdf", lambda: b"%PDF-1.7\n" + bytes(range(256)) * 20, "corrupt", "junk.pdf: corrupt"),
    ("void.pdf", lambda: b"", "empty", "void.pdf: empty file"),
    ("bad.docx", lambda: b"PK\x03\x04 this is not a zip archive", "corrupt", "bad.docx: corrupt Word file"),
    ("ole.docx", lambda: bytes.fromhex("d0cf11e0a1b11ae1") + b"\x00" * 600, "encrypted", "ole.docx: encrypted Word file"),
    ("nodoc.docx", lambda: _zip({"[Content_Types].xml": b"<Types/>"}), "corrupt", "nodoc.docx: corrupt Word file"),
])
def test_broken_files_have_a_kind_and_name_the_file(tmp_path, name, data, kind, msg):
    f = tmp_path / name
    f.write_bytes(data())
    with pytest.raises(DocumentError, match=msg) as e:
        load_file(f)
    assert e.value.kind == kind
    assert try_load_file(f, name)[1] == {"file": name, "kind": kind, "error": str(e.value)}


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return buf.getvalue()


def test_empty_docx_and_too_large(tmp_path):
    make_docx(tmp_path / "empty.docx", lambda d: None)
    with pytest.raises(DocumentError, match="empty.docx: no text in any of its 1 page") as e:
        load_file(tmp_path / "empty.docx")
    assert e.value.kind == "empty"
    with pytest.raises(DocumentError, match="over max_bytes") as e:
        load_file(SAMPLE / "support/agent_guidelines.docx", max_bytes=1000)
    assert e.value.kind == "too_large"


def test_docx_headings_lists_tables_and_page_breaks(tmp_path):
    from docx.enum.text import WD_BREAK

    def build(d):
        d.core_properties.title = ""
        d.add_paragraph("Store Handbook", style="Title")
        d.add_paragraph("Opening", style="Heading 1")
        d.add_paragraph("Doors open at nine.")
        d.add_paragraph("Check the till", style="List Number")
        d.add_paragraph("Switch on the lights", style="List Number")
        d.add_paragraph("Keys are in the safe", style="List Bullet")
        t = d.add_table(rows=2, cols=3)
        for cell, v in zip(t.rows[0].cells + t.rows[1].cells, ["Day", "Open", "Close", "Mon", "9:00", "18:00"]):
            cell.text = v
        p = d.add_paragraph("Before the break. ")
        p.add_run().add_break(WD_BREAK.PAGE)
        p.add_run("After the break.")
        d.add_paragraph("Closing", style="Heading 2")
        d.add_paragraph("Lock up.").paragraph_format.page_break_before = True
    pages = load_file(make_docx(tmp_path / "hb.docx", build))
    assert [d.id for d in pages] == ["hb.docx#p1", "hb.docx#p2", "hb.docx#p3"]
    assert pages[0].text == ("# Store Handbook\n\n## Opening\n\nDoors open at nine.\n\n1. Check the till\n\n"
                             "2. Switch on the lights\n\n- Keys are in the safe\n\nDay | Open | Close\nMon | 9:00 | 18:00\n\n"
                             "Before the break.")
    assert pages[1].text == "After the break.\n\n### Closing"
    assert pages[2].text == "Lock up." and pages[2].metadata["heading_path"] == ["Store Handbook", "Opening", "Closing"]
    assert pages[0].metadata["title"] == "Store Handbook" and pages[0].metadata["page_count"] == 3


def test_docx_without_breaks_is_one_page_and_rendered_breaks_count_once():
    guide = load_file(SAMPLE / "support/agent_guidelines.docx")
    assert len(guide) == 5                       # 4 explicit breaks, each followed by a w:lastRenderedPageBreak
    assert guide[4].text.startswith("## 9. Quality assurance")


def test_report_mode_loads_the_rest(tmp_path):
    (tmp_path / "ok.md").write_text("# Fine\n\nA good document.")
    (tmp_path / "bad.docx").write_bytes(b"not a zip")
    (tmp_path / "rows.jsonl").write_text('{"id": 1, "text": "ok"}\n{"id": 2, "text": ')
    (tmp_path / "good.pdf").write_bytes((SAMPLE / "support/escalation_matrix.pdf").read_bytes())
    with pytest.raises(DocumentError, match="bad.docx"):
        load_documents(tmp_path)                                      # errors="raise" by default
    with pytest.warns(UserWarning, match=r"skipped 2 file\(s\).*corrupt: 1, invalid: 1"):
        docs = load_documents(tmp_path, errors="report")
    assert isinstance(docs, DocumentList) and isinstance(docs, list)
    assert [d.id for d in docs] == ["good.pdf#p1", "good.pdf#p2", "ok.md"]
    assert [(f["file"], f["kind"]) for f in docs.failures] == [("bad.docx", "corrupt"), ("rows.jsonl", "invalid")]
    assert "rows.jsonl:2: malformed JSON line" in docs.failures[1]["error"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_documents(tmp_path / "ok.md", errors="report").failures == []
    with pytest.raises(ValueError, match="errors must be"):
        load_documents(tmp_path, errors="skip")


def test_try_load_file_is_plain_data_for_workers(tmp_path):
    import pickle
    docs, failure = try_load_file(SAMPLE / "policies/recycling_takeback.pdf", "policies/recycling_takeback.pdf")
    assert failure is None and all(type(d) is Document for d in docs)
    assert pickle.loads(pickle.dumps(docs)) == docs                    # what a worker process sends back
    e = DocumentError("x.pdf: bad", "x.pdf", "corrupt")
    back = pickle.loads(pickle.dumps(e))
    assert (str(back), back.path, back.kind) == ("x.pdf: bad", "x.pdf", "corrupt")
    with pytest.raises(ValueError, match="kind must be one of"):
        DocumentError("x", "x.pdf", "mystery")
    assert try_load_file(tmp_path / "gone.pdf")[1]["kind"] == "invalid"


def test_chunks_of_pages_carry_page_and_heading_path(tok):
    pages = clean_documents(load_file(SAMPLE / "policies/recycling_takeback.pdf", "policies/recycling_takeback.pdf"))
    cs = chunk(pages, max_tokens=64, overlap=8, tokenizer=tok)
    assert {c.metadata["page"] for c in cs} == {1, 2, 3} and all(c.metadata["page_count"] == 3 for c in cs)
    first_p2 = next(c for c in cs if c.doc_id.endswith("#p2"))
    assert first_p2.heading_path == ["Recycling and Take-Back of Old Appliances", "In our stores", "US stores"]
    assert all(pages[c.metadata["page"] - 1].text[c.start:c.end] == c.text for c in cs)
    plain = Document("a.md", "# A\n\nText here.", {"type": "markdown", "heading_path": ["X"]})  # not a page: ignored
    assert "page" not in chunk([plain], tokenizer=tok)[0].metadata
    assert chunk([plain], tokenizer=tok)[0].heading_path == ["A"]


def test_qa_page_ids_exist_and_sample_docs_reproducible(tmp_path):
    import json
    docs = load_documents(SAMPLE, exclude=["qa.jsonl", "sft.jsonl", "README.md", "eval/*"])
    ids = {d.id for d in docs}
    qa = [json.loads(l) for l in (SAMPLE / "qa.jsonl").read_text().splitlines()]
    paged = {i for q in qa for i in q["doc_ids"] if "#p" in i}
    assert paged and paged <= ids
    assert any(int(i.rsplit("#p", 1)[1]) >= 2 and ".pdf" in i for i in paged)
    r = subprocess.run([sys.executable, str(ROOT / "scripts/make_sample_docs.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
