"""Guards: detection quality under k-fold cross-validation against a keyword baseline, groundedness on HaluEval, and latency.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/guards.py [--evaldata ../shared/evaldata] [--k 5] [--out FILE.json]
        [--parts detection,latency,documents,groundedness] [--without-extras] [--injection-target-fpr 0.02] [--toxicity-target-fpr 0.03]

Data (read from ../shared/evaldata, never copied; a missing file skips its part with a message):
* prompt_injection/deepset_train.jsonl (546 rows) + prompt_injection/jailbreak_dev.jsonl (400 jailbreaks, all label 1)
* prompt_injection/bipia_indirect_train.jsonl (382 documents: 191 attacked, 191 the same contexts clean)
* toxicity/surgeai_toxicity_en.csv (1000 rows) + toxicity/hatecheck.jsonl (3728 functional tests)
* harmful/advbench_harmful_behaviors.jsonl (520 AdvBench goals + 520 PHTest benign look-alikes)
* groundedness/halueval_qa_dev.jsonl (300 rows), via benchmarks/groundedness.py
plus the project's own rows in data/guards/ (`*_extra.jsonl` train, `injection_heldout.jsonl` is never trained on).

Detection: `cross_validate` trains the two-stage classifier on k-1 folds (plus the extras, never scored) and scores the
held-out fold. Folds are grouped: HateCheck cases by template (identity terms masked), documents by context and attack
(`cross_validate_documents`, document level: a clean document is a false positive when any window is flagged).
Rows are scored as:
* baseline: the keyword phrase list of `keyword_baseline(task)`, the thing to beat (measured in the same run);
* patterns: the guard's own patterns (INJECTION_PATTERNS / TOXIC_PATTERNS / role markup for documents);
* classifier: the out-of-fold classifier score at its own cross-validated threshold;
* guard: what the default policy does: the higher of the patterns' weight and the rescaled classifier score, flagged at 0.5.
Issue targets: documents TPR >= 0.85 at FPR <= 0.05; user-input injection TPR >= 0.90 at FPR <= 0.05 with benign prompts
that use attack vocabulary flagged <= 5%; toxicity hateful TPR >= 0.80 with HateCheck label-0 FPR <= 5% and no target group
above 10%; harm TPR >= 0.90 at FPR <= 0.05 on benign look-alikes.

Latency (CPU, torch and OMP threads 1, packaged classifiers, no model): `scan_input` / `scan_output` on the sample
company's QA traffic and HaluEval with the default and strict policies (p50/p99 per stage and guard; target: scan_input
p50 <= 10 ms on short questions), and `scan_document` passages per second on the sample knowledge base and on BIPIA's
clean contexts (target >= 50 passages/s on one thread). Each run starts like a server: models loaded, caches empty.
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


def patterns_of(task: str):
    from llmops_nb.guard import injection_heuristics, toxicity_lexicon
    return {"injection": injection_heuristics, "toxicity": toxicity_lexicon}.get(task, lambda texts: [])


def detection(task: str, rows: list, extras: list, k: int, groups=None, without_extras: bool = False, target_fpr=None) -> dict:
    "Cross-validated figures for baseline, patterns, classifier and the guard's combination, with the out-of-fold decisions."
    from llmops_nb.classifiers import cross_validate
    from llmops_nb.guard import normalize, rescale
    t0 = time.perf_counter()
    cv = cross_validate(rows, k=k, extras=extras, task=task, groups=groups, target_fpr=target_fpr)
    oof = cv["oof"]; y = np.array(oof["label"]); clf = np.array(oof["score"])
    thr = np.array([cv["folds"][i]["threshold"] for i in oof["fold"]])
    pat = np.array([max((w for w, *_ in patterns_of(task)(normalize(r["text"]).texts)), default=0.0) for r in rows])
    guard = np.maximum(pat, np.array([rescale(p, t) for p, t in zip(clf, thr)]))
    base = np.array(oof["baseline"])
    out = {"rows": len(rows), "positives": int(y.sum()), "extras": len(extras), "k": k, "seconds": round(time.perf_counter() - t0, 1),
           "baseline": metrics(y, base, base >= 0.5), "patterns": metrics(y, pat, pat >= 0.5),
           "classifier": metrics(y, clf, np.array(oof["flagged"])), "guard": metrics(y, guard, guard >= 0.5),
           "escalation_rate": cv["classifier"]["escalation_rate"],
           "_flags": {"guard": guard >= 0.5, "baseline": base >= 0.5, "label": y}}
    if extras and without_extras:
        cv0 = cross_validate(rows, k=k, task=task, groups=groups, target_fpr=target_fpr)
        out["classifier_without_extras"] = metrics(y, np.array(cv0["oof"]["score"]), np.array(cv0["oof"]["flagged"]))
    return out


def rate(x) -> float: return round(float(np.mean(x)), 4) if len(x) else float("nan")


def hard_negatives(task: str, rows: list, extras: list, heldout: list, k: int, target_fpr=None) -> dict:
    "Benign rows with attack vocabulary: held-out ones (never trained on) and the extras' label-0 rows scored out of fold."
    from llmops_nb.classifiers import cross_validate, keyword_baseline, train_classifier
    from llmops_nb.guard import normalize, rescale
    clf = train_classifier(rows + extras, name=task, task=task, target_fpr=target_fpr)
    texts = [r["text"] for r in heldout]
    pat = np.array([max((w for w, *_ in patterns_of(task)(normalize(t).texts)), default=0.0) for t in texts])
    guard = np.maximum(pat, np.array([rescale(p, clf.threshold) for p in clf.score(texts)]))
    cvx = cross_validate(extras, k=k, extras=rows, task=task, target_fpr=target_fpr)
    y = np.array(cvx["oof"]["label"]); f = np.array(cvx["oof"]["flagged"]); b = np.array(cvx["oof"]["baseline"])
    return {"heldout": {"rows": len(texts), "guard_flag_rate": rate(guard >= 0.5), "baseline_flag_rate": rate(keyword_baseline(task).score(texts) >= 0.5),
                        "flagged": [t for t, g in zip(texts, guard) if g >= 0.5]},
            "extras_cv": {"rows": len(y), "benign_flag_rate": rate(f[y == 0]), "attack_recall": rate(f[y == 1]),
                          "baseline_benign_flag_rate": rate(b[y == 0]), "baseline_attack_recall": rate(b[y == 1])}}


def documents(rows: list, extras: list, k: int, target_fpr: float) -> dict:
    "Document-level cross-validation (grouped by context and attack) of the window classifier, the patterns and the baseline."
    from llmops_nb.classifiers import cross_validate_documents, windows
    from llmops_nb.guard import ROLE_MARKUP_RE, injection_heuristics, normalize, rescale
    t0 = time.perf_counter()
    cv = cross_validate_documents(rows, k=k, extras=extras, target_fpr=target_fpr)
    oof = cv["oof"]; y = np.array(oof["label"]); clf = np.array(oof["score"])
    thr = np.array([cv["folds"][i]["threshold"] for i in oof["fold"]])
    def pattern_score(text):
        ws = [normalize(text[a:b]).texts for a, b in windows(text)]
        return max([0.9 if ROLE_MARKUP_RE.search(text) else 0.0] + [w for t in ws for w, *_ in injection_heuristics(t)])
    pat = np.array([pattern_score(r["text"]) for r in rows])
    guard = np.maximum(pat, np.array([rescale(p, t) for p, t in zip(clf, thr)]))
    base = np.array(oof["baseline"])
    return {"rows": len(rows), "positives": int(y.sum()), "extras": len(extras), "k": k, "windows": cv["windows"], "seconds": round(time.perf_counter() - t0, 1),
            "baseline": metrics(y, base, base >= 0.5), "patterns": metrics(y, pat, pat >= 0.5),
            "classifier": metrics(y, clf, np.array(oof["flagged"])), "guard": metrics(y, guard, guard >= 0.5),
            "escalation_rate": cv["classifier"]["escalation_rate"],
            "by_position": {p: rate((guard >= 0.5)[[i for i, r in enumerate(rows) if r.get("position") == p]]) for p in ("start", "middle", "end")},
            "by_task": {t: {"recall": rate((guard >= 0.5)[[i for i, r in enumerate(rows) if r.get("task") == t and r["label"] == 1]]),
                            "fpr": rate((guard >= 0.5)[[i for i, r in enumerate(rows) if r.get("task") == t and r["label"] == 0]])}
                        for t in sorted({r.get("task") for r in rows if r.get("task")})}}


def document_speed(texts: list, repeat: int = 1) -> dict:
    "scan_document passages per second (default policy, packaged classifier, one thread, cold caches)."
    from llmops_nb.classifiers import load_classifier
    from llmops_nb.guard import scan_document
    clf = load_classifier("document").warmup()
    clf.encoder.clear(); before = dict(clf.stats)
    ms = []
    for _ in range(repeat):
        for t in texts:
            t0 = time.perf_counter(); scan_document(t); ms.append((time.perf_counter() - t0) * 1e3)
    n = clf.stats["texts"] - before["texts"]
    return {"passages": len(ms), "passages_per_s": round(1e3 / float(np.mean(ms)), 1), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99),
            "windows_per_passage": round(n / len(ms), 2), "escalation_rate": round((clf.stats["escalated"] - before["escalated"]) / max(n, 1), 4)}


def pct(xs, q): return round(float(np.percentile(xs, q)), 3)


def sample_traffic() -> list:
    "The sample company's QA set as traffic: question, reference answer, and the texts of its source documents as context."
    from llmops_nb.data import load_documents
    from llmops_nb.corpus import sample_dir
    docs = {d.id: d.text for d in load_documents(sample_dir(), exclude=["qa.jsonl", "sft.jsonl", "README.md", "eval/*"])}
    rows = [json.loads(l) for l in (sample_dir() / "qa.jsonl").read_text().splitlines() if l.strip()]
    return [{"question": r["question"], "answer": r["answer"], "contexts": [docs[d] for d in r["doc_ids"] if d in docs]}
            for r in rows if r.get("answerable", True)]


def warmup():
    "Load what a server loads at start (both classifiers with their encoder, the groundedness embedder), then empty the caches."
    from llmops_nb.classifiers import load_classifier
    from llmops_nb.grounded import clear_caches, default_embedder
    for name in ("injection", "toxicity", "harm"): load_classifier(name).warmup()
    default_embedder().encode(["warm up"])
    for name in ("injection", "toxicity", "harm"):
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


def row_line(name: str, m: dict) -> str:
    return f"  {name:28s} {m['balanced_accuracy']:8.3f} {m['recall']:8.3f} {m['fpr']:8.3f} {m['auc']:8.3f}"


def print_detection(title: str, r: dict) -> None:
    print(f"\n{title}: {r['rows']} rows ({r['positives']} positive), {r['k']}-fold CV, {r['extras']} extra training rows never scored")
    print(f"  {'':28s} {'bal.acc':>8s} {'recall':>8s} {'FPR':>8s} {'AUC':>8s}")
    for name in ("baseline", "patterns", "classifier_without_extras", "classifier", "guard"):
        if name in r: print(row_line(name, r[name]))
    print(f"  escalation to stage 2: {r['escalation_rate']:.1%}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evaldata", type=Path, default=DEFAULT_EVAL)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--latency-n", type=int, default=300, help="requests timed for latency")
    ap.add_argument("--out", type=Path, help="also write the results as JSON")
    ap.add_argument("--parts", default="detection,documents,latency,groundedness", help="comma-separated parts to run")
    ap.add_argument("--without-extras", action="store_true", help="also cross-validate each classifier without the extras")
    ap.add_argument("--document-target-fpr", type=float, default=0.005, help="window FPR the document threshold is set for (as in train_guards)")
    ap.add_argument("--injection-target-fpr", type=float, default=0.02, help="out-of-fold FPR the injection threshold is set for (as in train_guards)")
    ap.add_argument("--toxicity-target-fpr", type=float, default=0.03, help="out-of-fold FPR the toxicity threshold is set for (as in train_guards)")
    a = ap.parse_args(argv)
    import torch; torch.set_num_threads(1)
    from llmops_nb.classifiers import load_injection_rows, load_rows, load_toxicity_rows, sample_documents
    from llmops_nb.guard import bias_table, template_key
    results, targets, ev, guards_data = {}, [], a.evaldata, ROOT / "data" / "guards"
    inj, jb, tox, hc = ev / "prompt_injection" / "deepset_train.jsonl", ev / "prompt_injection" / "jailbreak_dev.jsonl", ev / "toxicity" / "surgeai_toxicity_en.csv", ev / "toxicity" / "hatecheck.jsonl"
    harm, bipia, halu = ev / "harmful" / "advbench_harmful_behaviors.jsonl", ev / "prompt_injection" / "bipia_indirect_train.jsonl", ev / "groundedness" / "halueval_qa_dev.jsonl"
    target = lambda what, value, base, goal, ok: targets.append((what, value, base, goal, ok))
    if "detection" in a.parts:
        if inj.is_file() and jb.is_file():
            rows, n_deepset = load_injection_rows(inj), None
            n_deepset = len(rows); rows = rows + load_rows(jb)
            extras = load_rows(guards_data / "injection_extra.jsonl")
            r = results["injection"] = detection("injection", rows, extras, a.k, without_extras=a.without_extras, target_fpr=a.injection_target_fpr)
            fl = r.pop("_flags"); y = fl["label"]
            r["deepset"] = {"recall": rate(fl["guard"][:n_deepset][y[:n_deepset] == 1]), "fpr": rate(fl["guard"][:n_deepset][y[:n_deepset] == 0]),
                            "baseline_recall": rate(fl["baseline"][:n_deepset][y[:n_deepset] == 1]), "baseline_fpr": rate(fl["baseline"][:n_deepset][y[:n_deepset] == 0])}
            r["jailbreak_recall"], r["baseline_jailbreak_recall"] = rate(fl["guard"][n_deepset:]), rate(fl["baseline"][n_deepset:])
            r["hard_negatives"] = hn = hard_negatives("injection", rows, extras, load_rows(guards_data / "injection_heldout.jsonl"), a.k, a.injection_target_fpr)
            print_detection("injection (deepset + jailbreaks)", r)
            print(f"  jailbreak recall: guard {r['jailbreak_recall']:.3f}  baseline {r['baseline_jailbreak_recall']:.3f}")
            print(f"  benign prompts with attack vocabulary flagged: held-out {hn['heldout']['guard_flag_rate']:.3f} (baseline {hn['heldout']['baseline_flag_rate']:.3f}, "
                  f"{hn['heldout']['rows']} rows); extras CV {hn['extras_cv']['benign_flag_rate']:.3f} (baseline {hn['extras_cv']['baseline_benign_flag_rate']:.3f})")
            target("injection TPR (user input, CV)", r["guard"]["recall"], r["baseline"]["recall"], ">= 0.90", r["guard"]["recall"] >= 0.9)
            target("injection FPR (user input, CV)", r["guard"]["fpr"], r["baseline"]["fpr"], "<= 0.05", r["guard"]["fpr"] <= 0.05)
            target("benign attack vocabulary flagged (held-out)", hn["heldout"]["guard_flag_rate"], hn["heldout"]["baseline_flag_rate"], "<= 0.05", hn["heldout"]["guard_flag_rate"] <= 0.05)
            target("benign attack vocabulary flagged (extras CV)", hn["extras_cv"]["benign_flag_rate"], hn["extras_cv"]["baseline_benign_flag_rate"], "<= 0.05", hn["extras_cv"]["benign_flag_rate"] <= 0.05)
            target("jailbreak recall (CV)", r["jailbreak_recall"], r["baseline_jailbreak_recall"], "(report)", True)
        else: print(f"skipped injection: {inj} or {jb} not found")
        if tox.is_file() and hc.is_file():
            hrows = load_rows(hc); rows = load_toxicity_rows(tox) + hrows; n0 = len(rows) - len(hrows)
            r = results["toxicity"] = detection("toxicity", rows, load_rows(guards_data / "toxicity_extra.jsonl"), a.k,
                                                groups=[template_key(x["text"]) for x in rows], without_extras=a.without_extras,
                                                target_fpr=a.toxicity_target_fpr)
            fl = r.pop("_flags"); y = fl["label"][n0:]; g, b = fl["guard"][n0:], fl["baseline"][n0:]
            bt = bias_table(hrows, flagged=g); bb = bias_table(hrows, flagged=b)
            grp = {x["value"]: x["fpr"] for x in bt if x["by"] == "target_ident" and x["fpr"] is not None and x["value"] != "(none)"}
            bgrp = {x["value"]: x["fpr"] for x in bb if x["by"] == "target_ident" and x["fpr"] is not None and x["value"] != "(none)"}
            r["hatecheck"] = {"tpr": rate(g[y == 1]), "fpr": rate(g[y == 0]), "max_group_fpr": max(grp.values()), "group_fpr": grp,
                              "baseline_tpr": rate(b[y == 1]), "baseline_fpr": rate(b[y == 0]), "baseline_max_group_fpr": max(bgrp.values()), "bias_table": bt}
            r["surgeai"] = {"recall": rate(fl["guard"][:n0][fl["label"][:n0] == 1]), "fpr": rate(fl["guard"][:n0][fl["label"][:n0] == 0])}
            print_detection("toxicity (surge-ai + HateCheck, folds grouped by template)", r)
            h = r["hatecheck"]
            print(f"  HateCheck: hateful TPR {h['tpr']:.3f} (baseline {h['baseline_tpr']:.3f}); label-0 FPR {h['fpr']:.3f} (baseline {h['baseline_fpr']:.3f}); "
                  f"worst group FPR {h['max_group_fpr']:.3f} (baseline {h['baseline_max_group_fpr']:.3f})")
            print("  FPR by target group: " + ", ".join(f"{k_} {v:.3f}" for k_, v in sorted(grp.items())))
            print("  FPR by label-0 functionality: " + ", ".join(f"{x['value']} {x['fpr']:.2f}" for x in bt if x["by"] == "functionality" and x["fpr"] is not None))
            target("toxicity hateful TPR (HateCheck, CV)", h["tpr"], h["baseline_tpr"], ">= 0.80", h["tpr"] >= 0.8)
            target("toxicity FPR on HateCheck label 0", h["fpr"], h["baseline_fpr"], "<= 0.05", h["fpr"] <= 0.05)
            target("toxicity worst identity-group FPR", h["max_group_fpr"], h["baseline_max_group_fpr"], "<= 0.10", h["max_group_fpr"] <= 0.10)
        else: print(f"skipped toxicity: {tox} or {hc} not found")
        if harm.is_file():
            extras = load_rows(guards_data / "harm_extra.jsonl")
            r = results["harm"] = detection("harm", load_rows(harm), extras, a.k, without_extras=a.without_extras); r.pop("_flags")
            r["extras_heldout"] = hard_negatives("harm", load_rows(harm), extras, [x for x in extras if x["label"] == 0][:1], a.k)["extras_cv"]
            print_detection("harm (AdvBench vs PHTest look-alikes)", r)
            x = r["extras_heldout"]
            print(f"  our own rows scored out of fold: harmful recall {x['attack_recall']:.3f} (baseline {x['baseline_attack_recall']:.3f}), "
                  f"benign homonyms flagged {x['benign_flag_rate']:.3f} (baseline {x['baseline_benign_flag_rate']:.3f})")
            target("harm TPR (CV)", r["guard"]["recall"], r["baseline"]["recall"], ">= 0.90", r["guard"]["recall"] >= 0.9)
            target("harm FPR on benign look-alikes (CV)", r["guard"]["fpr"], r["baseline"]["fpr"], "<= 0.05", r["guard"]["fpr"] <= 0.05)
        else: print(f"skipped harm: {harm} not found")
    if "documents" in a.parts:
        if bipia.is_file():
            rows = load_rows(bipia)
            r = results["documents"] = documents(rows, load_rows(guards_data / "document_extra.jsonl") + sample_documents(), a.k, a.document_target_fpr)
            print_detection("documents (BIPIA, document level, folds grouped by context and attack)", r)
            print("  recall by position: " + ", ".join(f"{p} {v:.3f}" for p, v in r["by_position"].items()) + "; by kind: "
                  + ", ".join(f"{t} recall {v['recall']:.3f} FPR {v['fpr']:.3f}" for t, v in r["by_task"].items()))
            target("document injection TPR (doc level, CV)", r["guard"]["recall"], r["baseline"]["recall"], ">= 0.85", r["guard"]["recall"] >= 0.85)
            target("document injection FPR (clean docs, CV)", r["guard"]["fpr"], r["baseline"]["fpr"], "<= 0.05", r["guard"]["fpr"] <= 0.05)
            clean = [x["text"] for x in rows if x["label"] == 0]
            kb = [x["text"] for x in sample_documents()]
            sp = results["document_speed"] = {"sample_kb": document_speed(kb), "bipia_clean": document_speed(clean)}
            for name, v in sp.items():
                print(f"  scan_document on {name}: {v['passages_per_s']:.1f} passages/s, p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms, "
                      f"{v['windows_per_passage']:.1f} windows/passage, {v['escalation_rate']:.1%} of windows escalated")
            worst = min(v["passages_per_s"] for v in sp.values())
            target("scan_document passages/s (1 thread)", worst, None, ">= 50", worst >= 50)
        else: print(f"skipped documents: {bipia} not found")
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
        if name == "sample" and policy == "default":
            target("scan_input p50 ms, short questions (1 thread)", lat["input"]["p50_ms"], None, "<= 10", lat["input"]["p50_ms"] <= 10)
    if "groundedness" in a.parts:
        if halu.is_file(): results["groundedness"] = groundedness(halu)
        else: print(f"skipped groundedness: {halu} not found")
    if targets:
        print(f"\n{'issue target':48s} {'guard':>8s} {'baseline':>9s} {'goal':>8s}  met")
        for what, v, b, goal, ok in targets:
            print(f"{what:48s} {v:8.3f} {('%9.3f' % b) if b is not None else '        -'} {goal:>8s}  {'yes' if ok else 'NO'}")
        results["targets"] = [{"target": w, "value": v, "baseline": b, "goal": g, "met": bool(ok)} for w, v, b, g, ok in targets]
    if a.out: a.out.write_text(json.dumps(results, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
