"""Evaluation throughput: cases per second of `run_suite` on the sample suite, and the speed-up the judge cache gives.

    .venv/bin/python benchmarks/eval_throughput.py [--cases N] [--judge-latency-ms MS] [--real N] [--out FILE.json]

The suite is data/sample/qa.jsonl (101 questions, references, relevant documents, tags), repeated to `--cases` cases.
The system under test is the guarded RAG pipeline (input guard, hybrid retrieval over the sample corpus with MiniLM,
prompt, generation, output guard with groundedness) whose model is an OpenAI-compatible test server
(`FakeOpenAIServer`) that answers instantly from the passages it is given, so the figures are the cost of the
pipeline and the scoring around a model, not of a model. With `--real N`, N cases also run through the packaged
SmolLM2-135M-Instruct on this machine, for the share the model itself takes.

1. Suite throughput, three configurations of the same cases:
   * scoring only: `run_suite` over a callable that returns pre-computed answers (text metrics, behaviour, cost);
   * RAG pipeline, default metrics (text, retrieval, behaviour, latency/tokens);
   * RAG pipeline, plus groundedness and answer relevance (MiniLM on every answer).
2. Judge cache: `judge:correctness` scored by a `Judge` over an OpenAI-compatible judge server that takes
   `--judge-latency-ms` per verdict (the baseline: a cold cache, every verdict asked), then the same run again
   (every verdict read from the SQLite cache). Printed: cases/s of each and the ratio warm/cold; also the ratio for
   judge calls alone (`Judge.batch`).
Timings are wall-clock on this machine with torch and OMP at one thread; compare ratios, not absolute figures.
"""
import argparse, json, os, re, sys, tempfile, time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def grounded_reply(prompt: str) -> str:
    "An instant 'model': the first sentence of the first passage in the prompt, cited."
    m = re.search(r"\[1\][^\n]*\n?(.+?[.!?])(\s|$)", prompt, re.S)
    return f"{m.group(1).strip()} [1]" if m else "I don't know."


def judge_reply(latency_s: float):
    def reply(prompt: str) -> str:
        time.sleep(latency_s)
        words = set(re.findall(r"\w+", prompt.lower()))
        return json.dumps({"score": 4 if len(words) % 2 else 2, "reason": "compared with the reference"})
    return reply


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=198, help="cases per run (the 99-question sample suite, repeated)")
    ap.add_argument("--judge-latency-ms", type=float, default=200.0, help="time the judge server takes per verdict")
    ap.add_argument("--judge-cases", type=int, default=60, help="cases scored by the judge")
    ap.add_argument("--real", type=int, default=0, help="also run this many cases through the packaged SmolLM2 (slow)")
    ap.add_argument("--out", help="write the figures as JSON here")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from llmops_nb.core import load_settings, read_jsonl
    from llmops_nb.generate import OpenAICompatGenerator
    from llmops_nb.testing import FakeOpenAIServer
    from llmops_nb.judge import Judge, JudgeCache
    from llmops_nb.pipeline import RAGPipeline
    from llmops_nb.prompts import PromptRegistry
    from llmops_nb.embeddings import Embedder
    from llmops_nb.retrieval import VectorStore
    from llmops_nb.corpus import sample_chunks, sample_dir
    from llmops_nb.suites import load_suite, run_suite

    rows = read_jsonl(sample_dir() / "qa.jsonl")
    cases = [{**r, "id": f"{r['id']}-{i // len(rows)}"} for i, r in enumerate(rows * (a.cases // len(rows) + 1))][:a.cases]
    suite = load_suite(cases)
    chunks, _ = sample_chunks()
    store = VectorStore(Embedder()); store.add_chunks(chunks)
    out = {"cases": len(suite), "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}}
    tmp = Path(tempfile.mkdtemp(prefix="evalbench-"))

    def timed(label, fn):
        t0 = time.perf_counter(); res = fn(); s = time.perf_counter() - t0
        out[label] = {"seconds": round(s, 3), "cases_per_s": round(len(res.cases) / s, 2)}
        print(f"{label:<34} {len(res.cases):>5} cases {s:8.2f} s {len(res.cases) / s:9.2f} cases/s", flush=True)
        return res

    print("1. suite throughput (model: an instant OpenAI-compatible test server)")
    with FakeOpenAIServer(reply=grounded_reply) as srv:
        rag = RAGPipeline(store, OpenAICompatGenerator(srv.url, "fake"), k=4, max_new_tokens=64)
        rag.answer(rows[0]["question"])                                   # warm-up: guard models and caches loaded
        answered = timed("rag_default_metrics", lambda: run_suite(rag, suite))
        answers = {r["id"]: r["output"] for r in answered.cases}
        timed("scoring_only", lambda: run_suite(lambda q, _a=iter([answers[c.id] for c in suite]): next(_a), suite,
                                                 metrics=["text", "behaviour", "latency_ms"]))
        timed("rag_plus_grounded_relevance", lambda: run_suite(rag, suite, metrics=["text", "retrieval", "behaviour", "latency_ms",
                                                                                     "groundedness", "answer_relevance"],
                                                                embedder=store.embedder))
    print(f"\n2. judge cache (judge server takes {a.judge_latency_ms:.0f} ms per verdict)")
    jsuite = load_suite(cases[:a.judge_cases])
    with FakeOpenAIServer(reply=grounded_reply) as srv, FakeOpenAIServer(reply=judge_reply(a.judge_latency_ms / 1e3)) as jsrv:
        rag = RAGPipeline(store, OpenAICompatGenerator(srv.url, "fake"), k=4, max_new_tokens=64)
        cache = JudgeCache(tmp / "verdicts.sqlite")
        judge = Judge(OpenAICompatGenerator(jsrv.url, "judge-model", max_workers=1), registry=PromptRegistry(tmp / "prompts"),
                      cache=cache, workers=1)
        cold = timed("suite_with_judge_cold", lambda: run_suite(rag, jsuite, metrics=["token_f1", "judge:correctness"], judge=judge))
        asked = len(jsrv.requests)
        warm = timed("suite_with_judge_warm", lambda: run_suite(rag, jsuite, metrics=["token_f1", "judge:correctness"], judge=judge))
        assert len(jsrv.requests) == asked, "the warm run asked the judge again"
        same = all(x["judge:correctness"] == y["judge:correctness"] for x, y in zip(cold.cases, warm.cases))
        items = [{"question": r["input"], "answer": r["output"], "reference": r["references"][0]} for r in cold.cases]
        cache.clear()
        t0 = time.perf_counter(); judge.batch(items); j_cold = time.perf_counter() - t0
        t0 = time.perf_counter(); judge.batch(items); j_warm = time.perf_counter() - t0
    out["judge"] = {"latency_ms": a.judge_latency_ms, "verdicts_asked": asked, "identical_scores_warm": same,
                    "suite_speedup": round(out["suite_with_judge_warm"]["cases_per_s"] / out["suite_with_judge_cold"]["cases_per_s"], 2),
                    "judge_only_cold_s": round(j_cold, 3), "judge_only_warm_s": round(j_warm, 4), "judge_only_speedup": round(j_cold / j_warm, 1)}
    print(f"judge cache: suite {out['judge']['suite_speedup']}x faster warm than cold (baseline: cold cache); judge calls alone "
          f"{out['judge']['judge_only_speedup']}x ({j_cold:.2f} s -> {j_warm * 1e3:.1f} ms for {len(items)} verdicts); "
          f"identical scores: {same}")
    if a.real:
        from llmops_nb.generate import HFGenerator
        print(f"\n3. {a.real} cases through the packaged SmolLM2-135M-Instruct on CPU")
        rag = RAGPipeline(store, HFGenerator(chat=True), k=4, max_new_tokens=96)
        rag.answer(rows[0]["question"])
        timed("rag_smollm2_cpu", lambda: run_suite(rag, load_suite(cases[:a.real])))
    if a.out: Path(a.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
