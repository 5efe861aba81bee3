"""Re-ranking: retrieval quality and latency of no re-ranking vs a cross-encoder vs an LLM re-ranker.

Setup: the sample corpus (`llmops_nb.corpus.sample_chunks()`) indexed with the packaged all-MiniLM-L6-v2, hybrid
retrieval (dense + BM25, fused by RRF). For each answerable question of `data/sample/qa.jsonl` (the first `--limit`,
default 30; 0: all), the store fetches `--depth` candidates and keeps the top `--k` after:

- none: the retrieval order;
- cross-encoder: `CrossEncoderReranker` on a cross-encoder folder given by `--cross-encoder`, or else one trained
  here by `train_cross_encoder` from MiniLM on the public HaluEval QA dev set (`--evaldata`, outside the repo:
  each question with its own knowledge passage as positive and `--negatives` other rows' passages as negatives,
  by default the ones closest to the question by MiniLM: hard negatives). Reused from `--ce-out` when it is there.
  It never sees the sample QA it is evaluated on. The row is skipped with a message when neither is available;
- llm: `LLMReranker` with the packaged SmolLM2-135M-Instruct (log-odds of "Yes" vs "No"), `--llm-batch` prompts
  per forward pass (`--no-llm` skips it).

Metrics are document-level, from `llmops_nb.ir_metrics.evaluate_retrieval` (relevant ids of dropped duplicates are
mapped to the copy that was kept): recall@k, MRR, nDCG@k; latency is wall time of one `search` call per question
(retrieval + re-ranking), p50 and p95 in ms, and its ratio to no re-ranking measured in the same run. Torch
threads (`--threads`, default 2). Run from the repository root:

    .venv/bin/python benchmarks/rerank.py --depth 20 [--k 5] [--limit 30] [--cross-encoder DIR] [--no-llm]
"""
import argparse, contextlib, io, os, statistics, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--depth", type=int, default=20, help="candidates fetched and re-ranked per question")
ap.add_argument("--k", type=int, default=5)
ap.add_argument("--limit", type=int, default=30, help="first N answerable questions; 0: all (the LLM row takes ~10 s each)")
ap.add_argument("--cross-encoder", default=None, help="a trained cross-encoder folder; default: train one here")
ap.add_argument("--ce-out", default="/tmp/llmops-bench/rerank-ce-halueval-v2", help="where the trained one is saved")
ap.add_argument("--evaldata", default=str(ROOT.parent / "shared/evaldata/groundedness/halueval_qa_dev.jsonl"))
ap.add_argument("--negatives", type=int, default=3)
ap.add_argument("--epochs", type=int, default=2)
ap.add_argument("--lr", type=float, default=5e-5)
ap.add_argument("--train-max-length", type=int, default=128, help="tokens per training pair (HaluEval pairs are short)")
ap.add_argument("--random-negatives", action="store_true", help="default: hard negatives (closest by MiniLM)")
ap.add_argument("--no-llm", action="store_true")
ap.add_argument("--llm-batch", type=int, default=4)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()

import torch

torch.set_num_threads(a.threads)
from llmops_nb.core import read_jsonl
from llmops_nb.corpus import sample_chunks
from llmops_nb.embeddings import Embedder
from llmops_nb.ir_metrics import evaluate_retrieval
from llmops_nb.rerank import CrossEncoderReranker, LLMReranker, contrastive_pairs, train_cross_encoder
from llmops_nb.retrieval import VectorStore


class Reranked:
    "The store as `evaluate_retrieval` sees it: every search fetches `depth` candidates and re-ranks them; timed."

    def __init__(self, store, rerank, depth):
        self.store, self.depth, self.ms = store, depth, []
        self.rerank = None if rerank is None else lambda q, hits: rerank(q, hits[:depth])  # hybrid fuses up to 2x depth

    def values(self, name):
        return self.store.values(name)

    def search(self, query, k, where=None, mode="hybrid"):
        t = time.perf_counter()
        hits = self.store.search(query, k=k, where=where, mode=mode, rerank=self.rerank, fetch_k=self.depth)
        self.ms.append(1e3 * (time.perf_counter() - t))
        return hits


def cross_encoder():
    "The cross-encoder folder to use, trained here if needed; None (with a message) when there is no way to get one."
    if a.cross_encoder:
        return a.cross_encoder
    if (Path(a.ce_out) / "cross_encoder.json").is_file():
        print(f"cross-encoder: reusing {a.ce_out} (delete it to retrain)")
        return a.ce_out
    if not Path(a.evaldata).is_file():
        print(f"cross-encoder: SKIPPED: no --cross-encoder folder and no training data at {a.evaldata}")
        return None
    rows = read_jsonl(a.evaldata)
    embed = None if a.random_negatives else Embedder().embed
    pairs = contrastive_pairs([r["question"] for r in rows], [r["knowledge"] for r in rows], a.negatives, 0, embed)
    t = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        train_cross_encoder(pairs, a.ce_out, base="all-minilm-l6-v2", epochs=a.epochs, batch_size=16,
                            learning_rate=a.lr, max_length=a.train_max_length)
    kind = "random" if a.random_negatives else "hard"
    print(f"cross-encoder: trained from all-MiniLM-L6-v2 on {len(pairs)} HaluEval QA pairs ({len(rows)} questions, "
          f"{a.negatives} {kind} negatives each, {a.epochs} epochs) in {time.perf_counter() - t:.0f} s -> {a.ce_out}")
    return a.ce_out


chunks, dropped = sample_chunks()
aliases = {r["id"]: r["duplicate_of"] for r in dropped}
store = VectorStore(Embedder())
store.add_chunks(chunks)
qa = [r for r in read_jsonl(ROOT / "data/sample/qa.jsonl") if r.get("answerable", True) and r.get("doc_ids")]
qa = qa[: a.limit] if a.limit else qa
store.search(qa[0]["question"], k=a.k, mode="hybrid")  # warm-up: model load, BM25 statistics

rerankers = {"none": None}
if ce := cross_encoder():
    rerankers["cross-encoder"] = CrossEncoderReranker(ce)
if not a.no_llm:
    with contextlib.redirect_stderr(io.StringIO()):
        rerankers["llm (SmolLM2-135M)"] = LLMReranker("smollm2-135m-instruct", batch_size=a.llm_batch)

res = {}
for name, r in rerankers.items():
    view = Reranked(store, r, a.depth)
    if r is not None:
        r(qa[0]["question"], store.search(qa[0]["question"], k=2))  # warm-up
    m = evaluate_retrieval(view, qa, k=a.k, mode="hybrid", aliases=aliases)
    q = statistics.quantiles(view.ms, n=20)
    res[name] = dict(m, p50=statistics.median(view.ms), p95=q[18])
    print(f"  done: {name} ({len(view.ms)} questions, {sum(view.ms) / 1e3:.0f} s)", flush=True)

K, base = a.k, res["none"]
print(f"\nsample QA: {base['queries']} answerable questions, {len(chunks)} chunks, hybrid retrieval, depth {a.depth}, "
      f"k={K}, {a.threads} torch thread(s)")
print(f"{'re-ranker':<20} {'recall@' + str(K):>9} {'MRR':>6} {'nDCG@' + str(K):>8} {'p50 ms':>9} {'p95 ms':>9} "
      f"{'p50 vs none':>12}")
for name, m in res.items():
    print(f"{name:<20} {m[f'recall_at_{K}']:>9.3f} {m['mrr']:>6.3f} {m[f'ndcg_at_{K}']:>8.3f} {m['p50']:>9.1f} "
          f"{m['p95']:>9.1f} {m['p50'] / base['p50']:>11.1f}x")
print("\ncommand: " + " ".join([".venv/bin/python", "benchmarks/rerank.py", *sys.argv[1:]]))
