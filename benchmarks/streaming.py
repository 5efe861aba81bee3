"""Streaming: time to the first guarded text vs the whole answer, on the local engine.

    .venv/bin/python benchmarks/streaming.py [--runs N] [--max-new-tokens 64] [--out FILE.json]

The real guarded pipeline (`RAGPipeline`: input guard, hybrid retrieval over the packaged sample corpus, document scan, the
packaged RAG prompt, the local `HFGenerator` on the packaged SmolLM2-135M, and the output guard) with a policy whose output
guards can run on a growing answer (the default policy without its whole-answer groundedness check; see `stream_mode`).
torch and OMP at 1 thread. Each run calls `answer_stream` and measures, from the call:
* ttft: the first `delta` event (text the incremental output guard released to the client),
* full: the final `answer` event (the whole answer checked by `scan_output`),
with greedy decoding and `--max-new-tokens` tokens at most (the question asks for a long answer, so runs reach the limit; the
completion tokens are printed). One warm-up call first; medians over `--runs`. Target: ttft <= 30% of full.
"""
import argparse, json, os, statistics, sys, time

os.environ.setdefault("OMP_NUM_THREADS", "1")
for k, v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}.items(): os.environ.setdefault(k, v)

QUESTIONS = ["Explain in detail how returns, refunds and exchanges work, step by step.",
             "Describe everything the documents say about shipping times and costs, with examples.",
             "Give a detailed overview of the warranty terms and how to make a claim."]
POLICY = {"extends": "default", "output": {"groundedness": None}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.runs < 1 or a.max_new_tokens < 1: ap.error("--runs and --max-new-tokens must be >= 1")
    import torch
    torch.set_num_threads(1)
    from llmops_nb.generate import HFGenerator
    from llmops_nb.guard import stream_mode
    from llmops_nb.pipeline import RAGPipeline
    from llmops_nb.embeddings import Embedder
    from llmops_nb.retrieval import VectorStore
    from llmops_nb.corpus import sample_chunks
    store = VectorStore(Embedder()); store.add_chunks(sample_chunks()[0])
    rag = RAGPipeline(store, HFGenerator(chat=True, device="cpu"), policy=POLICY, k=4, max_new_tokens=a.max_new_tokens, temperature=0.0)
    assert stream_mode(rag.policy)[0] == "streaming"

    def once(q):
        t0 = time.perf_counter(); first = None
        for ev in rag.answer_stream(q):
            if ev["type"] == "mode": assert ev["mode"] == "streaming", ev
            if ev["type"] == "delta" and first is None: first = time.perf_counter() - t0
            if ev["type"] == "answer": ans = ev["answer"]
        full = time.perf_counter() - t0
        g = [s for s in ans.trace.steps if s.name == "generate"][-1]; before = g.at_ms; g = g.data
        return {"ttft_s": first if first is not None else full, "full_s": full, "ratio": (first if first is not None else full) / full,
                "model_ttft_ms": g.get("ttft_ms"), "before_generate_ms": before, "completion_tokens": g.get("completion_tokens"), "status": ans.status}

    once(QUESTIONS[0])                                         # warm-up: caches, first forward pass
    rows = []
    for i in range(a.runs):
        r = once(QUESTIONS[i % len(QUESTIONS)]); rows.append(r)
        print(f"run {i + 1}: ttft {r['ttft_s'] * 1e3:7.0f} ms  full {r['full_s'] * 1e3:7.0f} ms  ratio {r['ratio']:.3f}  "
              f"tokens {r['completion_tokens']}  before generation {r['before_generate_ms']:.0f} ms  model ttft {r['model_ttft_ms']:.0f} ms  {r['status']}")
    med = {k: statistics.median(r[k] for r in rows) for k in ("ttft_s", "full_s", "ratio")}
    print(f"median over {a.runs} runs: ttft {med['ttft_s'] * 1e3:.0f} ms, full {med['full_s'] * 1e3:.0f} ms, "
          f"ttft / full = {med['ratio']:.3f} (target <= 0.30: {'met' if med['ratio'] <= 0.30 else 'NOT met'})")
    if a.out:
        with open(a.out, "w") as f: json.dump({"runs": rows, "median": med, "max_new_tokens": a.max_new_tokens}, f, indent=1)
    return 0 if med["ratio"] <= 0.30 else 1


if __name__ == "__main__":
    sys.exit(main())
