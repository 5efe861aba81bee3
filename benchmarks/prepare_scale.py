"""Data preparation throughput per executor: documents/s of the per-document pipeline (load, clean, dedupe signatures
and the central dedupe, PII redaction, chunking) on a generated corpus, in-process (1 worker), on a local process pool
and on local Ray Data, with the ratio against in-process measured in the same run, and a check that every executor
produced the same chunks (content digest) and the same deduplication report.

    python benchmarks/prepare_scale.py                           # 20,000 documents, no PII step
    python benchmarks/prepare_scale.py --docs 1000 --pii mask    # with Presidio PII redaction (slow: fewer documents)

The corpus is deterministic (seeded): policy- and product-like documents of a few hundred words built from the
sample knowledge base's sentences, with a share of exact copies and near duplicates (a few words changed), written
as JSONL files (100 documents each) into a temporary folder.
"""
import argparse, json, os, random, re, shlex, sys, tempfile, time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from llmops_nb.core import digest
from llmops_nb.corpus import sample_dir
from llmops_nb.data import dedupe, dedupe_signature, deprioritize, load_documents
from llmops_nb.executors import get_executor
from llmops_nb.prepare import PrepareConfig, chunk_documents, gather_documents

KINDS = ["Returns policy", "Warranty terms", "Product guide", "Store notice", "Support procedure", "Delivery policy"]


def sentences() -> list:
    "Sentences of the sample knowledge base (PII included: the planted e-mails, phones and names give PII work)."
    docs = load_documents(sample_dir(), exclude=["qa.jsonl", "sft.jsonl", "README.md", "eval/*"])
    out = {s.strip() for d in docs for s in re.split(r"(?<=[.!?])\s+|\n+", d.text) if 6 <= len(s.split()) <= 60}
    return sorted(s for s in out if not s.startswith("#"))


def make_corpus(folder: Path, n: int, seed: int = 0, dup_share: float = 0.05, near_share: float = 0.05) -> dict:
    "n documents as JSONL files of 100 rows; `dup_share` exact copies and `near_share` near duplicates of earlier ones."
    rng, pool, rows = random.Random(seed), sentences(), []
    for i in range(n):
        r = rng.random()
        if rows and r < dup_share:
            text = rng.choice(rows)["text"]
        elif rows and r < dup_share + near_share:
            words = rng.choice(rows)["text"].split(" ")
            for _ in range(3):
                words[rng.randrange(len(words))] = rng.choice(["new", "updated", "revised", "current"])
            text = " ".join(words)
        else:
            kind = rng.choice(KINDS)
            paras = [" ".join(rng.sample(pool, rng.randint(3, 6))) for _ in range(rng.randint(3, 5))]
            text = f"# {kind} {i}\n\n" + "\n\n".join(paras)
        rows.append({"id": f"doc-{i:06d}", "text": text})
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(0, n, 100):
        with open(folder / f"part-{k // 100:04d}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows[k : k + 100])
    return {"documents": n, "files": (n + 99) // 100, "words": sum(len(r["text"].split()) for r in rows)}


def run_one(name: str, workers: int, cfg: PrepareConfig) -> dict:
    """Time the executor's start (with one tiny map, so pools and actors exist), then both stages; return the figures
    and what to compare."""
    t0 = time.perf_counter()
    with get_executor(name, workers) as ex:
        ex.map(abs, [0])
        t1 = time.perf_counter()
        g = gather_documents(cfg, ex)
        t2 = time.perf_counter()
        pii, rows = chunk_documents(cfg, g.kept, ex)
    t3 = time.perf_counter()
    return {"executor": name, "workers": workers, "start_s": t1 - t0, "seconds": t3 - t1, "stage1_s": t2 - t1,
            "stage2_s": t3 - t2, "docs": len(g.loaded), "kept": len(g.kept), "chunks": len(rows),
            "pii": sum(pii.values()), "digest": digest(rows), "dedupe": digest(g.duplicates),
            "duplicates": len(g.duplicates), "g": g}


def central_dedupe_seconds(cfg: PrepareConfig, g) -> float:
    "The serial part of stage 1: the dedupe decision over precomputed signatures (the same in every executor)."
    sigs = {d.id: dedupe_signature(d.text) for d in g.docs}
    t = time.perf_counter()
    dedupe(g.docs, threshold=cfg.dedupe_threshold, prefer=deprioritize(*cfg.deprioritize_ids), signatures=sigs)
    return time.perf_counter() - t


def spin(n: int) -> int:
    "Pure Python CPU work, for the calibration."
    return sum(range(n))


def cpu_headroom(workers: int) -> float:
    """How much faster `workers` processes run pure CPU work than one (ideally `workers`): what the machine can give
    any executor right now; other load on a small machine takes it away."""
    items = [20_000_000] * (4 * workers)
    times = []
    for ex in (get_executor("local"), get_executor("process", workers)):
        t = time.perf_counter()
        ex.map(spin, items)
        times.append(time.perf_counter() - t)
    return times[0] / times[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--pii", choices=["none", "mask"], default="none", help="none: no PII step; mask: Presidio")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executors", default="local,process,ray")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print("command:", " ".join(shlex.quote(x) for x in [Path(sys.executable).name, *sys.argv]))
    with tempfile.TemporaryDirectory() as tmp:
        info = make_corpus(Path(tmp) / "corpus", a.docs, a.seed)
        print(f"corpus: {info['documents']} documents in {info['files']} JSONL files, {info['words']} words, "
              f"{os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f}), PII: {a.pii}")
        entities = PrepareConfig().pii_entities if a.pii == "mask" else []  # []: no PII step at all
        cfg = PrepareConfig(inputs=[str(Path(tmp) / "corpus")], exclude=[], sft_path="", pii_entities=entities)
        print(f"CPU headroom: {a.workers} processes run pure Python work x{cpu_headroom(a.workers):.2f} faster than one")
        results = []
        for name in a.executors.split(","):
            res = run_one(name, 1 if name == "local" else a.workers, cfg)
            results.append(res)
            base = results[0]
            print(f"  {name:8s} workers={res['workers']}  start {res['start_s']:5.1f} s | pipeline {res['seconds']:7.1f} s "
                  f"(stage 1 {res['stage1_s']:.1f} s, stage 2 {res['stage2_s']:.1f} s)  {res['docs'] / res['seconds']:7.1f} "
                  f"docs/s  x{base['seconds'] / res['seconds']:.2f} vs {base['executor']} | with start "
                  f"{res['docs'] / (res['seconds'] + res['start_s']):7.1f} docs/s  "
                  f"x{(base['seconds'] + base['start_s']) / (res['seconds'] + res['start_s']):.2f}", flush=True)
        central = central_dedupe_seconds(cfg, results[0]["g"])
    print(f"central dedupe decision (serial in every executor): {central:.1f} s; "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work on the machine slows all)")
    same = all(r["digest"] == results[0]["digest"] and r["dedupe"] == results[0]["dedupe"] for r in results)
    r0 = results[0]
    print(f"kept {r0['kept']} of {r0['docs']} documents ({r0['duplicates']} duplicates), {r0['chunks']} chunks, "
          f"{r0['pii']} PII spans; chunk digest {r0['digest'][:16]}")
    print("identical chunk digests and dedupe reports across executors:", same)
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
