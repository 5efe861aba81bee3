"""Draw the architecture picture as hand-written SVG: `python scripts/architecture.py` writes nbs/images/architecture.svg.

Plain string building (no network, no drawing library), so the text stays selectable and the output is byte-for-byte
reproducible: tests/repo/test_docs.py checks that the committed picture is what this script draws now.
`--check` exits 1 when the committed file differs; `--out PATH` writes elsewhere."""
import argparse, os, sys, tempfile
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "nbs" / "images" / "architecture.svg"
W = 900
SANS = "Helvetica, Arial, 'DejaVu Sans', sans-serif"
MONO = "Menlo, Consolas, 'DejaVu Sans Mono', monospace"
INK, MUTED, LINE = "#1f2937", "#4b5563", "#374151"
# one (fill, stroke) pair per kind of box: the same kind has the same colour everywhere
PALETTE = {"data": ("#e3edff", "#3b6fd8"), "build": ("#e2f5e7", "#2f9e55"), "pipe": ("#f0e8fd", "#7c4dcc"),
           "step": ("#ffffff", "#7c4dcc"), "eval": ("#fff3da", "#c98500"), "ops": ("#dff4f4", "#17898a"),
           "record": ("#f3f4f6", "#6b7280"), "scale": ("#fff0e6", "#d2622a")}
TITLE_H, LINE_H, PAD = 18, 15, 9
CX0, CX1 = 206, 694          # the centre column: the lifecycle
LX0, LX1 = 16, 186           # left band: run records and W&B
RX0, RX1 = 714, 884          # right band: scale-out

def text(x, y, s, size=12, weight="normal", anchor="start", fill=INK, mono=False) -> str:
    fam = MONO if mono else SANS
    w = ' font-weight="bold"' if weight == "bold" else ""
    return f'<text x="{x}" y="{y}" font-family="{fam}" font-size="{size}"{w} text-anchor="{anchor}" fill="{fill}">{escape(s)}</text>'

def box_h(lines: list) -> int:
    "Height of a box with a title and `lines` of text."
    return PAD + TITLE_H + LINE_H * len(lines) + PAD - 2

def box(x, y, w, kind, title, lines=(), center=True, mono_lines=()) -> tuple:
    "SVG of a rounded box with a bold title and lines; returns (svg, height)."
    fill, stroke = PALETTE[kind]
    h = box_h(list(lines))
    cx, anchor = (x + w / 2, "middle") if center else (x + 10, "start")
    out = [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>',
           text(cx, y + PAD + 13, title, 14, "bold", anchor)]
    for i, l in enumerate(lines):
        out.append(text(cx, y + PAD + TITLE_H + 12 + LINE_H * i, l, 12, anchor=anchor, fill=MUTED, mono=i in mono_lines))
    return "\n".join(out), h

def arrow(x1, y1, x2, y2, dashed=False, color=LINE, label=None, label_dx=6) -> str:
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    marker = "url(#head-dash)" if dashed else "url(#head)"
    s = f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{color}" stroke-width="1.5"{dash} marker-end="{marker}"/>'
    if label: s += "\n" + text((x1 + x2) / 2 + label_dx, (y1 + y2) / 2 + 4, label, 11, fill=MUTED)
    return s

def svg() -> str:
    "The whole picture as SVG text."
    parts, mid = [], (CX0 + CX1) // 2
    add = parts.append
    add(text(W / 2, 28, "llmops-nb: from documents to a monitored service", 18, "bold", "middle"))
    add(text(W / 2, 48, "solid: data and models flowing through the lifecycle · dashed: run records and scale-out paths",
             12, anchor="middle", fill=MUTED))
    y = 66
    s, h = box(CX0, y, CX1 - CX0, "data", "documents", ["data/sample: policies, FAQ, products, support threads"]); add(s)
    rows = {"documents": (y, h)}
    y += h + 26; add(arrow(mid, y - 26, mid, y - 2))
    s, h = box(CX0, y, CX1 - CX0, "data", "prepare_data",
               ["clean · dedupe (MinHash) · PII redact · chunk · SFT rows", "versioned datasets, each named by its dataset digest"]); add(s)
    rows["prepare_data"] = (y, h)
    y += h + 30
    half = (CX1 - CX0 - 20) // 2
    bx, tx = CX0, CX0 + half + 20
    add(arrow(bx + half // 2, y - 30, bx + half // 2, y - 2, label="chunks"))
    add(arrow(tx + half // 2, y - 30, tx + half // 2, y - 2, label="SFT rows"))
    s, h = box(bx, y, half, "build", "build_index", ["MiniLM embeddings + FAISS", "retrieval metrics"]); add(s)
    s, _ = box(tx, y, half, "build", "train_sft", ["TRL + PEFT LoRA, resumable", "verified merge, model card"]); add(s)
    rows["train"] = (y, h)
    y += h + 30
    add(arrow(bx + half // 2, y - 30, bx + half // 2, y - 2, label="index"))
    add(arrow(tx + half // 2, y - 30, tx + half // 2, y - 2, label="adapter"))
    # the guarded RAG pipeline: a box of five steps
    steps = [("input", "guard"), ("retrieve", "top-k"), ("prompt", "registry"), ("model", "generate"), ("output guard", "grounded")]
    ph = 30 + 46 + 12
    fill, stroke = PALETTE["pipe"]
    add(f'<rect x="{CX0}" y="{y}" width="{CX1 - CX0}" height="{ph}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>')
    add(text(mid, y + PAD + 13, "guarded RAG pipeline (RAGPipeline.answer)", 14, "bold", "middle"))
    sw = 88; gap = (CX1 - CX0 - 16 - 5 * sw) / 4
    for i, (a, b) in enumerate(steps):
        sx = CX0 + 8 + i * (sw + gap)
        f2, s2 = PALETTE["step"]
        add(f'<rect x="{sx:.1f}" y="{y + 32}" width="{sw}" height="46" rx="6" fill="{f2}" stroke="{s2}" stroke-width="1"/>')
        add(text(round(sx + sw / 2, 1), y + 51, a, 12, "bold" if i != 4 else "normal", "middle"))
        add(text(round(sx + sw / 2, 1), y + 67, b, 11, anchor="middle", fill=MUTED))
        if i < 4: add(arrow(round(sx + sw + 2, 1), y + 55, round(sx + sw + gap - 2, 1), y + 55))
    rows["pipeline"] = (y, ph)
    y += ph + 30; add(arrow(mid, y - 30, mid, y - 2, label="answers, citations, verdicts"))
    s, h = box(CX0, y, CX1 - CX0, "eval", "evaluate: base model, then fine-tuned",
               ["suites · metrics with 95% intervals · LLM judge", "paired bootstrap / McNemar gate · HTML report"]); add(s)
    rows["evaluate"] = (y, h)
    y += h + 30; add(arrow(mid, y - 30, mid, y - 2, label="gate verdict: ship or not"))
    s, h = box(CX0, y, CX1 - CX0, "ops", "serve (llmops serve)",
               ["FastAPI · OpenAI-compatible /v1/chat/completions", "hashed API keys · rate, size and time limits · streaming"]); add(s)
    rows["serve"] = (y, h)
    y += h + 30; add(arrow(mid, y - 30, mid, y - 2, label="one trace per request"))
    s, h = box(CX0, y, CX1 - CX0, "ops", "trace store", ["SQLite (WAL): many writers, versioned schema, retention"]); add(s)
    rows["traces"] = (y, h)
    y += h + 30; add(arrow(mid, y - 30, mid, y - 2))
    s, h = box(CX0, y, CX1 - CX0, "ops", "monitor", ["drift (PSI, KS, MMD, topics) · alert rules + webhook", "dashboard.html"]); add(s)
    rows["monitor"] = (y, h)
    bottom = y + h

    # left band: every stage writes a run record; the band spans the whole lifecycle
    top = rows["prepare_data"][0]
    fill, stroke = PALETTE["record"]
    add(f'<rect x="{LX0}" y="{top}" width="{LX1 - LX0}" height="{bottom - top}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>')
    add(text(LX0 + 10, top + 22, "run records", 14, "bold"))
    add(text(LX0 + 10, top + 40, "+ lineage", 14, "bold"))
    left = [("runs/<runbook>/<id>/", True), ("  params.json", True), ("  metrics.json", True), ("  lineage.json", True),
            ("  notebook.ipynb", True), ("(the executed runbook)", False), ("", False),
            ("inputs and outputs by", False), ("digest: data → model", False), ("→ evaluation → serve", False), ("", False),
            ("llmops lineage", True), ("        TRACE_ID", True), ("a served answer back to", False), ("its runs and data digest", False)]
    for i, (l, mono) in enumerate(left):
        if l: add(text(LX0 + 10, top + 64 + LINE_H * i, l, 11 if mono else 12, fill=MUTED, mono=mono))
    s, h = box(LX0 + 8, bottom - 90, LX1 - LX0 - 16, "record", "W&B", ["offline by default,", "online with a key"], center=True)
    add(s.replace(PALETTE["record"][0], "#ffffff", 1))
    for name in ("prepare_data", "train", "evaluate", "serve", "monitor"):
        ry, rh = rows[name]
        add(arrow(CX0 - 2, ry + rh // 2, LX1 + 3, ry + rh // 2, dashed=True, color=PALETTE["record"][1]))

    # right band: the scale-out paths, each pointing at the stage it replaces or speeds up
    add(text((RX0 + RX1) / 2, rows["prepare_data"][0] + 18, "scale-out", 14, "bold", "middle"))
    add(text((RX0 + RX1) / 2, rows["prepare_data"][0] + 38, "GPU machines:", 12, anchor="middle", fill=MUTED))
    add(text((RX0 + RX1) / 2, rows["prepare_data"][0] + 54, "environment.yml", 11, anchor="middle", fill=MUTED, mono=True))
    def side(name, title, lines, y0=None):
        ry, rh = rows[name]
        bh = box_h(lines); by = ry + (rh - bh) // 2 if y0 is None else y0
        s, _ = box(RX0, by, RX1 - RX0, "scale", title, lines); add(s)
        add(arrow(RX0 - 2, by + bh // 2, CX1 + 3, by + bh // 2, dashed=True, color=PALETTE["scale"][1]))
    side("train", "accelerate", ["DDP · FSDP ·", "DeepSpeed ZeRO-2/3"])
    py = rows["pipeline"][0]
    side("pipeline", "faiss-gpu", ["GPU index + search"], y0=py - 22)
    side("pipeline", "vLLM / TGI", ["OpenAICompatGenerator"], y0=py + 42)
    side("serve", "llmops serve", ["endpoint: a vLLM server"])
    side("monitor", "schedulers", ["cron · K8s CronJob ·", "Slurm (deploy/)"])

    H = bottom + 20
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
            f'aria-labelledby="title">\n<title id="title">llmops-nb architecture: documents, prepare_data, build_index and '
            f'train_sft, the guarded RAG pipeline, evaluate, serve, trace store, monitor; run records and scale-out paths</title>\n'
            f'<defs>\n<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{LINE}"/></marker>\n'
            f'<marker id="head-dash" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{MUTED}"/></marker>\n</defs>\n'
            f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fbfcfd"/>\n')
    return head + "\n".join(parts) + "\n</svg>\n"

def write(path: Path, data: str) -> Path:
    "Write `data` to `path` atomically (temp file in the same folder, then rename)."
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f: f.write(data)
        os.chmod(tmp, 0o644); os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True); raise
    return path

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="where to write the SVG (default: nbs/images/architecture.svg)")
    ap.add_argument("--check", action="store_true", help="exit 1 when the file differs from what this script draws")
    a = ap.parse_args(argv)
    if a.check:
        same = a.out.is_file() and a.out.read_text(encoding="utf-8") == svg()
        print(f"{a.out}: {'in step' if same else 'out of step: run python scripts/architecture.py'}")
        return 0 if same else 1
    print(f"wrote {write(a.out, svg())}")
    return 0

if __name__ == "__main__": sys.exit(main())
