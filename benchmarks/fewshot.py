"""Few-shot prompting: zero-shot vs k-shot answers of the RAG pipeline on the sample suite, and how often they copy.

Setup: the sample corpus (`llmops_nb.corpus.sample_chunks()`) indexed in memory with the packaged all-MiniLM-L6-v2
(hybrid retrieval, k=4 passages), the packaged SmolLM2-135M-Instruct answering greedily (`--max-new-tokens`, default
64) behind the default guard policy, and the built-in `rag` chat template. `llmops_nb.fewshot.compare_shots` runs the
first `--limit` questions of `data/sample/qa.jsonl` (default 20) zero-shot (the baseline, measured in the same run)
and with k = `--ks` (default 2,4) examples of `data/sample/eval/fewshot_examples.jsonl`, picked two ways: `fixed` (the
first k of the file) and `similar` (the k whose questions are nearest to the question by MiniLM cosine). The examples
were written from the sample documents; none is a question of the suite (compare_shots refuses an overlap).

Printed per setting: token F1 and ROUGE-L against the references with 95% bootstrap intervals, the paired difference
from zero-shot [95% interval] and its ratio to zero-shot, the refusal rate, prompt tokens per question and their ratio
to zero-shot (the price of the examples), and the copy rate (answers closer to a shown example's answer than they are
supported by their passages; `check_copying`) with the flagged cases. Torch threads: `--threads` (default 2).
Run from the repository root:

    .venv/bin/python benchmarks/fewshot.py [--limit 20] [--ks 2,4] [--max-new-tokens 64]
"""
import argparse, os, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--limit", type=int, default=20, help="first N questions of the suite")
ap.add_argument("--ks", default="2,4", help="comma-separated numbers of examples (0-shot always runs)")
ap.add_argument("--suite", default=str(ROOT / "data/sample/qa.jsonl"))
ap.add_argument("--examples", default=str(ROOT / "data/sample/eval/fewshot_examples.jsonl"))
ap.add_argument("--max-new-tokens", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--show", type=int, default=3, help="flagged copies printed per setting")
a = ap.parse_args()
os.chdir(ROOT)

import torch

torch.set_num_threads(a.threads)
from llmops_nb.corpus import sample_chunks
from llmops_nb.embeddings import Embedder
from llmops_nb.fewshot import compare_shots
from llmops_nb.generate import HFGenerator
from llmops_nb.pipeline import RAGPipeline
from llmops_nb.retrieval import VectorStore

t0 = time.perf_counter()
store = VectorStore(Embedder(cache=False))
store.add_chunks(sample_chunks()[0])
gen = HFGenerator("smollm2-135m-instruct", chat=True)
pipe = RAGPipeline(store, gen, k=4, max_new_tokens=a.max_new_tokens, temperature=0.0, seed=0)
ks = [int(k) for k in a.ks.split(",") if k.strip() and int(k) > 0]
metrics = ["token_f1", "rougeL", "refused", "prompt_tokens"]
cmp = compare_shots(pipe, a.suite, a.examples, ks=ks, metrics=metrics, limit=a.limit, progress=False)
wall = time.perf_counter() - t0

base = {m: cmp.results["0-shot"].aggregates[m]["mean"] for m in metrics}
print(f"suite {Path(a.suite).name}, first {a.limit} questions; SmolLM2-135M-Instruct greedy, MiniLM; "
      f"torch threads {a.threads}; wall {wall:.0f} s")
print(f"{'setting':<11} {'token F1 [95% CI]':<22} {'dF1 vs 0-shot [95% CI]':<26} {'F1 ratio':>8} {'ROUGE-L':>8} "
      f"{'refused':>8} {'prompt tok':>10} {'tok ratio':>9} {'copy rate':>13}")
for name, res in cmp.results.items():
    agg, p, c = res.aggregates, cmp.paired.get(name, {}), cmp.copies.get(name)
    f1 = agg["token_f1"]
    d = p.get("token_f1")
    dtxt = f"{d.delta:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" if d else "baseline"
    ratio = f1["mean"] / base["token_f1"] if base["token_f1"] else float("nan")
    toks = agg["prompt_tokens"]["mean"]
    copy = f"{c.rate:.2f} ({len(c.flagged)}/{c.checked})" if c else "-"
    print(f"{name:<11} {f1['mean']:.3f} [{f1['low']:.3f}, {f1['high']:.3f}]   {dtxt:<26} {ratio:>8.2f} "
          f"{agg['rougeL']['mean']:>8.3f} {agg['refused']['mean']:>8.2f} {toks:>10.0f} {toks / base['prompt_tokens']:>9.2f} "
          f"{copy:>13}")
for name, c in cmp.copies.items():
    for r in c.flagged[: a.show]:
        print(f"  copy in {name} {r['id']}: {r['answer'][:90]!r} <- example {r['example']['answer'][:70]!r} "
              f"(F1 {r['copy']:.2f}, support {r['support']:.2f})")
