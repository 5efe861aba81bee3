"""Guards: detection quality under k-fold cross-validation against a keyword baseline, groundedness on HaluEval, and latency.

    .venv/bin/python benchmarks/guards.py [--evaldata ../shared/evaldata] [--k 5] [--out FILE.json] [--skip-groundedness]

Data (read from ../shared/evaldata, never copied; a missing file skips its part with a message):
* prompt_injection/deepset_train.jsonl (546 rows, English and German, Apache-2.0)
* toxicity/surgeai_toxicity_en.csv (1000 rows, MIT)
* groundedness/halueval_qa_dev.jsonl (300 rows, MIT), via benchmarks/groundedness.py

Detection (injection, toxicity): `llmops_nb.classifiers.cross_validate` trains the two-stage classifier on k-1 folds (plus the
project's own extra rows in data/guards/, never scored) and scores the held-out fold, so no row is scored by a model that saw it.
Rows are scored as:
* baseline: the keyword phrase list of `keyword_baseline(task)`, the thing to beat;
* patterns: the guard's own patterns (INJECTION_PATTERNS / TOXIC_PATTERNS) on the normalized text and its decodings;
* classifier: the out-of-fold classifier score at its own cross-validated threshold;
* guard: what `scan_input` does with the default policy: the higher of the patterns' weight and the classifier score
  rescaled so that its threshold sits at 0.5, flagged at 0.5.
Reported: balanced accuracy, recall, false-positive rate, ROC AUC.

Latency (CPU, torch and OMP threads 1, packaged classifiers, no model), on two kinds of benign traffic the classifiers
never saw: the sample company's QA set (its questions; its reference answers with their source documents as the
retrieved context) and HaluEval (trivia questions; right answers with their knowledge passage). `scan_input` and
`scan_output` with the default policy, and the two together per request; `scan_input` on the injection rows too.
Each run starts like a server: models loaded, embedding caches empty. p50/p99 per stage and per guard, in milliseconds.
Target: whole input+output stack p50 <= 10 ms.
"""
import argparse, importlib.util, json, os, sys, tempfile, time
from pathlib import Path
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EVAL = ROOT.parent / "shared" / "evaldata"


def metrics(y: np.ndarray, score: np.ndarray, flagged: np.ndarray) -> dict:
    from llmops_nb.guard import roc
    pos, neg = y == 1, y == 0
    rec, fpr = float(flagged[pos].mean()), float(flagged[neg].mean())
    return {"balanced_accuracy": round((rec + 1 - fpr) / 2, 4), "recall": round(rec, 4), "fpr": round(fpr, 4),
            "auc": round(roc(y, score.astype(float))[3], 4)}


def detection(task: str, rows: list, extras: list, k: int) -> dict:
    "Cross-validated figures for baseline, patterns, classifier and the guard's combination."
    from llmops_nb.classifiers import cross_validate
    from llmops_nb.guard import injection_heuristics, normalize, rescale, toxicity_lexicon
    patterns = injection_heuristics if task == "injection" else toxicity_lexicon
    t0 = time.perf_counter()
    cv = cross_validate(rows, k=k, extras=extras, task=task)
    oof = cv["oof"]; y = np.array(oof["label"]); clf = np.array(oof["score"])
    thr = np.array([cv["folds"][i]["threshold"] for i in oof["fold"]])
    pat = np.array([max((w for w, *_ in patterns(normalize(r["text"]).texts)), default=0.0) for r in rows])
    guard = np.maximum(pat, np.array([rescale(p, t) for p, t in zip(clf, thr)]))
    base = np.array(oof["baseline"])
    out = {"rows": len(rows), "positives": int(y.sum()), "extras": len(extras), "k": k, "seconds": round(time.perf_counter() - t0, 1),
           "baseline": metrics(y, base, base >= 0.5), "patterns": metrics(y, pat, pat >= 0.5),
           "classifier": metrics(y, clf, np.array(oof["flagged"])), "guard": metrics(y, guard, guard >= 0.5),
           "escalation_rate": cv["classifier"]["escalation_rate"]}
    if extras:
        cv0 = cross_validate(rows, k=k, task=task)
        out["classifier_without_extras"] = metrics(y, np.array(cv0["oof"]["score"]), np.array(cv0["oof"]["flagged"]))
    return out


def pct(xs, q): return round(float(np.percentile(xs, q)), 3)


def sample_traffic() -> list:
    "The sample company's QA set as traffic: question, reference answer, and the texts of its source documents as context."
    from llmops_nb.data import load_documents
    from llmops_nb.retrieval import sample_dir
    docs = {d.id: d.text for d in load_documents(sample_dir(), exclude=["qa.jsonl", "sft.jsonl", "README.md", "eval/*"])}
    rows = [json.loads(l) for l in (sample_dir() / "qa.jsonl").read_text().splitlines() if l.strip()]
    return [{"question": r["question"], "answer": r["answer"], "contexts": [docs[d] for d in r["doc_ids"] if d in docs]}
            for r in rows if r.get("answerable", True)]


def warmup():
    "Load what a server loads at start (both classifiers with their encoder, the groundedness embedder), then empty the caches."
    from llmops_nb.classifiers import load_classifier
    from llmops_nb.grounded import clear_caches, default_embedder
    for name in ("injection", "toxicity"): load_classifier(name).warmup()
    default_embedder().encode(["warm up"])
    for name in ("injection", "toxicity"):
        if (enc := load_classifier(name).encoder) is not None: enc.clear()
    clear_caches()


def latency(rows: list, attacks: list, n: int, policy: str = "default") -> dict:
    "p50/p99 of scan_input, scan_output and both, per guard too, with `policy` and the packaged classifiers."
    from llmops_nb.guard import load_policy, scan_input, scan_output
    pol = load_policy(policy)
    rows = rows[:n]
    warmup()
    for r in rows[:5]: scan_input(r["question"], pol); scan_output(r["answer"], r["contexts"], pol, question=r["question"])
    res = {"input": [], "output": [], "total": [], "attack_input": []}
    guards = {"input": {}, "output": {}}
    for r in rows:
        t0 = time.perf_counter(); vi = scan_input(r["question"], pol); t1 = time.perf_counter()
        vo = scan_output(r["answer"], r["contexts"], pol, question=r["question"]); t2 = time.perf_counter()
        res["input"].append((t1 - t0) * 1e3); res["output"].append((t2 - t1) * 1e3); res["total"].append((t2 - t0) * 1e3)
        for side, v in (("input", vi), ("output", vo)):
            for g, ms in v.timings.items(): guards[side].setdefault(g, []).append(ms)
    for t in attacks[:n]:
        t0 = time.perf_counter(); scan_input(t, pol); res["attack_input"].append((time.perf_counter() - t0) * 1e3)
    out = {k: {"n": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99)} for k, v in res.items() if v}
    out["per_guard"] = {side: {g: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99)} for g, v in gs.items()} for side, gs in guards.items()}
    return out


def groundedness(path: Path) -> dict:
    spec = importlib.util.spec_from_file_location("groundedness_bench", ROOT / "benchmarks" / "groundedness.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    with tempfile.TemporaryDirectory() as d:
        mod.main(["--data", str(path), "--out", f"{d}/g.json", "--repeat", "50"])
        return json.loads(Path(f"{d}/g.json").read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evaldata", type=Path, default=DEFAULT_EVAL)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--latency-n", type=int, default=300, help="requests timed for latency")
    ap.add_argument("--out", type=Path, help="also write the results as JSON")
    ap.add_argument("--parts", default="detection,latency,groundedness", help="comma-separated parts to run")
    a = ap.parse_args(argv)
    import torch; torch.set_num_threads(1)
    from llmops_nb.classifiers import load_injection_rows, load_rows, load_toxicity_rows
    results = {}
    inj, tox, halu = (a.evaldata / "prompt_injection" / "deepset_train.jsonl", a.evaldata / "toxicity" / "surgeai_toxicity_en.csv",
                      a.evaldata / "groundedness" / "halueval_qa_dev.jsonl")
    for task, path, loader in (("injection", inj, load_injection_rows), ("toxicity", tox, load_toxicity_rows)):
        if "detection" not in a.parts: break
        if not path.is_file(): print(f"skipped {task}: {path} not found"); continue
        extras = load_rows(ROOT / "data" / "guards" / f"{task}_extra.jsonl")
        r = results[task] = detection(task, loader(path), extras, a.k)
        print(f"\n{task}: {r['rows']} rows ({r['positives']} positive), {a.k}-fold CV, {r['extras']} extra training rows never scored")
        print(f"  {'':28s} {'bal.acc':>8s} {'recall':>8s} {'FPR':>8s} {'AUC':>8s}")
        for name in ("baseline", "patterns", "classifier_without_extras", "classifier", "guard"):
            if name in r: m = r[name]; print(f"  {name:28s} {m['balanced_accuracy']:8.3f} {m['recall']:8.3f} {m['fpr']:8.3f} {m['auc']:8.3f}")
        print(f"  escalation to stage 2: {r['escalation_rate']:.1%}")
    attacks = [r["text"] for r in load_injection_rows(inj) if r["label"] == 1] if inj.is_file() else []
    traffic = {"sample": sample_traffic()}
    if halu.is_file():
        traffic["halueval"] = [{"question": r["question"], "answer": r["right_answer"], "contexts": [r["knowledge"]]}
                               for r in (json.loads(l) for l in halu.read_text().splitlines() if l.strip())]
    for (name, rows), policy in ((t, p) for t in traffic.items() for p in ("default", "strict") if "latency" in a.parts):
        lat = results[f"latency_{name}_{policy}"] = latency(rows, attacks, a.latency_n, policy)
        print(f"\nlatency on {name} traffic, {policy} policy, packaged classifiers, 1 thread (ms):")
        for k in ("input", "attack_input", "output", "total"):
            if k in lat: print(f"  {k:14s} p50 {lat[k]['p50_ms']:7.2f}  p99 {lat[k]['p99_ms']:7.2f}  (n={lat[k]['n']})")
        for side, gs in lat["per_guard"].items():
            print(f"  {side} guards p50/p99: " + ", ".join(f"{g} {m['p50_ms']:.2f}/{m['p99_ms']:.2f}" for g, m in gs.items()))
    if "groundedness" in a.parts:
        if halu.is_file(): results["groundedness"] = groundedness(halu)
        else: print(f"skipped groundedness: {halu} not found")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "per_guard"} if isinstance(v, dict) else v
                      for k, v in results.items() if k != "groundedness"}))
    if a.out: a.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
