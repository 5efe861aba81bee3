"""Groundedness: how well `llmops_nb.grounded.check_grounded` tells HaluEval QA's right answers from its hallucinated ones,
against a plain token-overlap baseline, how it treats paraphrase, and how long one check takes in each semantic mode.

    .venv/bin/python benchmarks/groundedness.py [--data PATH] [--out FILE.json] [--repeat N]

The data is read from ../shared/evaldata/groundedness/halueval_qa_dev.jsonl next to the repository (or --data): rows with
`knowledge`, `question`, `right_answer`, `hallucinated_answer`. When it is absent the script prints "skipped: ..." and exits 0.
Nothing is downloaded or copied.

Each row gives two decisions (its right answer should be supported by `knowledge`, its hallucinated answer not): 600 decisions
for 300 rows. The question is passed to the checker as `question=` (an ablation row runs without it).

Scores (an answer's score is its weakest claim's, as in `GroundReport.score`; claims' parts come from semantic="always"):
* baseline: ROUGE-1 recall of the answer in the knowledge (share of the answer's lowercase `\\w+` tokens, with repeats, that
  occur in the knowledge; no stopword removal, no stemming);
* lexical: the `semantic="never"` score (weighted recall of content words, numbers and names in the best 2-sentence window,
  halved per missing item); "no penalty" drops the halving;
* semantic: MiniLM similarity of each claim and its best passage sentence, mapped to [0, 1], nothing else;
* combined: (weight * lexical + (1 - weight) * semantic), halved per missing item, the `semantic="always"` score;
* auto: `check_grounded(semantic="auto")` itself, at the library's weight and the threshold CV chose for "combined" at it.

(a) accuracy: 5-fold cross-validation grouped by row (a row's two answers are always in the same fold; rows shuffled with a
fixed seed). On the four training folds the threshold (and for "weight by CV" the weight, from 0.0, 0.1, ..., 1.0) that
maximises accuracy is chosen; it is applied to the held-out fold. No threshold is ever chosen on the rows it scores.
(b) pairwise: share of rows whose right answer scores above the hallucinated one (ties count one half); no threshold.
The per-fold choices are printed; the library's default threshold is the median of those for the library's weight.

The made-up RAG check: 40 one-sentence claims about the three latency contexts below, 20 supported in other words and 20 not
(wrong numbers, invented names, contradictions, additions), written for this benchmark: small, not independent evidence, there
to show what each setting does to paraphrase. Each system uses the median of its per-fold choices.

Latency: one process, torch and OMP threads 1, two 3-sentence answers over the 3 made-up contexts of about 150 words (one that
copies its sources, one that paraphrases two of its sentences), `--repeat` calls per mode after a warm-up, p50 and p99 in ms;
"warm" keeps the context caches (retrieved chunks recur), "cold" clears them before every call. Also p50/p99 per HaluEval
answer (each knowledge paragraph seen for the first time).
"""
import argparse, json, os, random, re, statistics, sys, time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata" / "groundedness" / "halueval_qa_dev.jsonl"
WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
CHATGPT = 0.626        # ChatGPT's accuracy on HaluEval QA, as reported in the HaluEval paper (Li et al., 2023)

CONTEXTS = [
    "Kestrel Outdoor accepts returns of unused items within 30 days of delivery. Items must be in their original packaging with "
    "all tags attached, and a receipt or order number is required. Sale items marked final sale cannot be returned. To start a "
    "return, sign in to your account, open the order and choose Return items; a prepaid label is e-mailed within one business "
    "day. Drop the parcel at any post office. Returns from Alaska and Hawaii may take longer to arrive at our warehouse in Reno, "
    "Nevada. Once the parcel is scanned we inspect it within 3 business days. Damaged or used items may be refused and sent back "
    "at your cost. Gift returns are refunded as store credit to the gift recipient.",
    "Refunds are issued to the original payment method. After inspection, card refunds take 5 to 10 business days to appear, "
    "depending on your bank. PayPal refunds usually arrive within 2 business days. Original shipping charges are not refunded "
    "unless the item arrived damaged or we sent the wrong item. A restocking fee of 15% applies to opened electronics such as "
    "GPS watches and headlamps. If you paid with a gift card, the refund is loaded onto a new gift card. Refunds for orders "
    "placed with a promotional code are reduced by the value of the discount received. Contact support if you have not "
    "received your refund after 14 business days.",
    "Exchanges for a different size or colour are free within 30 days. Choose Exchange instead of Return when you start the "
    "process and the replacement ships as soon as your parcel is scanned. Exchanges are only possible for the same product; "
    "for a different product, return the item and place a new order. Kestrel members get free return shipping on every order "
    "and an extended return window of 60 days. Membership is free and can be joined at checkout. Items bought in a Kestrel "
    "store can be returned in any store or by post. Store returns are refunded immediately to the card used. Our support team "
    "answers by chat from 8 am to 8 pm Pacific time, Monday to Saturday.",
]
ANSWER = ("You can return unused items within 30 days of delivery if they are in their original packaging [1]. "
          "Card refunds take 5 to 10 business days to appear after inspection, depending on your bank [2]. "
          "Kestrel members get free return shipping and an extended return window of 60 days [3].")
PARAPHRASED = ("Unused items can be sent back within 30 days of delivery. "
               "Your money goes back to the card or account you paid with. "
               "Joining the membership costs nothing and can be done at checkout.")
# A made-up check for RAG-style paraphrase (written for this benchmark, not a public data set): claims about CONTEXTS,
# 20 supported in other words, 20 not (wrong numbers, invented names, contradictions, additions).
RAG_SUPPORTED = [
    "Unused items can be sent back within 30 days of delivery.", "You need a receipt or an order number to return something.",
    "Final sale items cannot be returned.", "A prepaid return label is emailed to you within one business day.",
    "Card refunds take 5 to 10 business days to appear, depending on your bank.", "PayPal refunds normally arrive within 2 business days.",
    "Shipping charges are not refunded unless the item arrived damaged.", "Opened electronics such as GPS watches carry a 15% restocking fee.",
    "Members of Kestrel get free return shipping and 60 days to return items.",
    "You can exchange an item for another size or colour for free within 30 days.",
    "If you paid with a gift card, your refund goes onto a new gift card.",
    "Support is available by chat from 8 am to 8 pm Pacific time, Monday to Saturday.",
    "Items bought in a store can be returned in any store or by post.",
    "The warehouse inspects returned parcels within 3 business days of scanning.",
    "To return an item, sign in, open your order and select Return items.", "Gift returns are refunded as store credit to the recipient.",
    "Your money goes back to the card or account you paid with.", "Joining the membership costs nothing and can be done at checkout.",
    "Used or damaged products might be rejected and returned to you at your expense.", "Store returns are refunded to your card right away.",
]
RAG_UNSUPPORTED = [
    "Unused items can be returned within 45 days of delivery.", "Card refunds take 2 to 3 business days.",
    "A restocking fee of 25% applies to opened electronics.", "Returns are handled by UPS Logistics in Denver.",
    "Kestrel members get an extended return window of 90 days.", "Final sale items can be returned for store credit.",
    "Original shipping charges are always refunded.", "Exchanges for a different product are free.",
    "Support answers by phone around the clock.", "PayPal refunds arrive instantly.",
    "Returns from Canada are free with a DHL Express label.", "Our stores offer same-day repairs for GPS watches.",
    "Items must be returned within two weeks.", "Gift cards expire after 12 months.", "The warehouse is in Portland, Oregon.",
    "Refunds are never issued to the original payment method.", "Express exchanges cost $12.", "Membership costs $49 per year.",
    "You must call support to start a return.", "Damaged items are replaced by the manufacturer within a week.",
]


def rouge1_recall(answer: str, knowledge: str) -> float:
    "Share of the answer's lowercase word tokens (with repeats) found in the knowledge."
    a, k = re.findall(r"\w+", answer.lower()), set(re.findall(r"\w+", knowledge.lower()))
    return sum(t in k for t in a) / len(a) if a else 0.0


def sentence_parts(report) -> list:
    "(lexical, semantic, missing count) of each claim of a report computed with semantic='always'."
    return [(s.lexical, s.semantic if s.semantic is not None else 0.0, len(s.missing)) for s in report.claims]


def combine(parts: list, w: float, penalty: float, mode: str) -> float:
    "An answer's score from its claims' parts, as check_grounded computes it."
    if not parts: return 1.0
    if mode == "lexical": return min(l * penalty ** m for l, s, m in parts)
    if mode == "semantic": return min(s for l, s, m in parts)
    return min((w * l + (1 - w) * s) * penalty ** m for l, s, m in parts)


def best_threshold(scores: list, labels: list) -> tuple:
    "(threshold, accuracy) maximising accuracy of `score >= threshold` on these answers (midpoints of sorted scores)."
    pts = sorted(set(scores))
    cands = [pts[0] - 1e-9] + [(a + b) / 2 for a, b in zip(pts, pts[1:])] + [pts[-1] + 1e-9]
    best = (0.5, -1.0)
    for t in cands:
        acc = sum((s >= t) == y for s, y in zip(scores, labels)) / len(labels)
        if acc > best[1] + 1e-12: best = (t, acc)
    return best


def folds(n_rows: int, k: int = 5, seed: int = 0) -> list:
    "k lists of row indices: rows shuffled once with `seed`, then cut into k nearly equal parts."
    idx = list(range(n_rows)); random.Random(seed).shuffle(idx)
    return [sorted(idx[i::k]) for i in range(k)]


def cross_validate(scores: dict, n_rows: int, k: int = 5) -> dict:
    """5-fold CV grouped by row. `scores[w][i]` is row i's (right, hallucinated) score under weight w; per fold the (weight,
    threshold) with the best training accuracy (ties: weight nearer 0.5) is applied to the held-out rows."""
    correct = pair = 0.0; chosen = []
    for test in folds(n_rows, k):
        train = sorted(set(range(n_rows)) - set(test))
        fits = []
        for w, sc in scores.items():
            t, acc = best_threshold([s for i in train for s in sc[i]], [y for _ in train for y in (1, 0)])
            fits.append((acc, -abs((w if w is not None else 0.5) - 0.5), w, t))
        acc, _, w, t = max(fits, key=lambda f: (f[0], f[1]))
        chosen.append({"weight": w, "threshold": round(t, 4), "train_acc": round(acc, 4)})
        for i in test:
            r, h = scores[w][i]
            correct += (r >= t) + (h < t)
            pair += 1.0 if r > h else 0.5 if r == h else 0.0
    return {"accuracy": correct / (2 * n_rows), "pairwise": pair / n_rows, "folds": chosen}


def pctl(xs: list, q: float) -> float:
    "The q-quantile of xs (nearest rank)."
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def timed(fn, n: int) -> list:
    "Milliseconds of n calls of fn."
    out = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); out.append((time.perf_counter() - t0) * 1000)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--repeat", type=int, default=200, help="timed calls per mode and answer")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: {args.data} not found (HaluEval QA dev rows; see ../shared/evaldata/README.md)"); return 0
    import torch
    torch.set_num_threads(1)
    from llmops_nb import grounded as G
    rows = [json.loads(l) for l in args.data.read_text(encoding="utf-8").splitlines() if l.strip()]
    n, P, W0 = len(rows), G.MISS_PENALTY, G.LEX_WEIGHT
    emb = G.default_embedder()
    G.check_grounded("Warm up the model.", ["Warm up the model."], semantic="always", embedder=emb)
    answers = lambda r: (r["right_answer"], r["hallucinated_answer"])

    # every claim's parts once (semantic="always" computes both), with and without the question
    parts = [[sentence_parts(G.check_grounded(a, [r["knowledge"]], semantic="always", embedder=emb, question=r["question"]))
              for a in answers(r)] for r in rows]
    parts_noq = [[sentence_parts(G.check_grounded(a, [r["knowledge"]], semantic="always", embedder=emb)) for a in answers(r)]
                 for r in rows]
    base = [[rouge1_recall(a, r["knowledge"]) for a in answers(r)] for r in rows]
    sc = lambda ps, w, pen, mode: {w: [[combine(p, w, pen, mode) for p in pr] for pr in ps]}
    systems = {
        "baseline (ROUGE-1 recall)": cross_validate({None: base}, n),
        "lexical": cross_validate(sc(parts, 1.0, P, "lexical"), n),
        "lexical, no penalty": cross_validate(sc(parts, 1.0, 1.0, "lexical"), n),
        "semantic": cross_validate(sc(parts, 0.0, P, "semantic"), n),
        "semantic, no question": cross_validate(sc(parts_noq, 0.0, P, "semantic"), n),
        "combined (weight by CV)": cross_validate({w: sc(parts, w, P, "combined")[w] for w in WEIGHTS}, n),
        **{f"combined, weight {w}": cross_validate(sc(parts, w, P, "combined"), n) for w in (0.5, 0.6, 0.7, 0.8, 0.9)},
    }
    # auto, cross-validated: per fold the threshold chosen for "combined, weight W0" on the training rows is given to
    # check_grounded(semantic="auto") on the held-out rows; its decisions are compared with semantic="always" at that threshold
    ref = systems[f"combined, weight {W0}"]
    ok = agree = claims = embedded = 0
    for test, fold in zip(folds(n), ref["folds"]):
        for i in test:
            for a, y, p in zip(answers(rows[i]), (1, 0), parts[i]):
                rep = G.check_grounded(a, [rows[i]["knowledge"]], threshold=fold["threshold"], embedder=emb, question=rows[i]["question"])
                ok += rep.supported == y
                agree += rep.supported == (combine(p, W0, P, "combined") >= fold["threshold"])
                claims += len(rep.claims); embedded += sum(s.semantic is not None for s in rep.claims)
    auto_cv = {"accuracy": ok / (2 * n), "agreement_with_always": agree / (2 * n), "claims_embedded": embedded / max(claims, 1)}

    # the made-up RAG paraphrase check, each system at the median of its per-fold choices
    med = lambda s, key: statistics.median(f[key] for f in s["folds"])
    rag = {}
    joined = " ".join(CONTEXTS)
    for name, mode, w, s in (("baseline (ROUGE-1 recall)", None, None, systems["baseline (ROUGE-1 recall)"]),
                             ("lexical", "lexical", 1.0, systems["lexical"]), ("semantic", "semantic", 0.0, systems["semantic"]),
                             ("combined (weight by CV)", "combined", med(systems["combined (weight by CV)"], "weight"),
                              systems["combined (weight by CV)"]),
                             *((f"combined, weight {w}", "combined", w, systems[f"combined, weight {w}"]) for w in (0.6, 0.7, 0.8))):
        t = med(s, "threshold"); fa = miss = 0
        for y, lst in ((1, RAG_SUPPORTED), (0, RAG_UNSUPPORTED)):
            for a in lst:
                v = rouge1_recall(a, joined) if mode is None else combine(sentence_parts(G.check_grounded(a, CONTEXTS, semantic="always",
                                                                                           embedder=emb)), w, P, mode)
                fa += y and v < t; miss += (not y) and v >= t
        rag[name] = {"weight": w, "threshold": round(t, 4), "accuracy": 1 - (fa + miss) / 40, "false_alarms": fa, "misses": miss}
    fa = sum(not G.check_grounded(a, CONTEXTS, embedder=emb).supported for a in RAG_SUPPORTED)
    miss = sum(G.check_grounded(a, CONTEXTS, embedder=emb).supported for a in RAG_UNSUPPORTED)
    rag["auto (shipped defaults)"] = {"weight": W0, "threshold": G.THRESHOLD, "accuracy": 1 - (fa + miss) / 40, "false_alarms": fa,
                                      "misses": miss}

    # latency
    lat = {}
    for mode in G.MODES:
        for name, ans in (("typical", ANSWER), ("paraphrased", PARAPHRASED)):
            call = lambda: G.check_grounded(ans, CONTEXTS, semantic=mode, embedder=emb)
            timed(call, 5)
            warm = timed(call, args.repeat)
            cold = timed(lambda: (G.clear_caches(), call()), max(20, args.repeat // 5))
            lat[f"{mode} {name}"] = {"warm_p50": pctl(warm, .5), "warm_p99": pctl(warm, .99), "cold_p50": pctl(cold, .5),
                                     "cold_p99": pctl(cold, .99), "embedded": sum(s.semantic is not None for s in call().sentences)}
        halu = [t for r in rows for a in answers(r) for t in timed(lambda: G.check_grounded(a, [r["knowledge"]], semantic=mode,
                                                                                          embedder=emb, question=r["question"]), 1)]
        lat[f"{mode} halueval"] = {"warm_p50": pctl(halu, .5), "warm_p99": pctl(halu, .99)}

    print(f"HaluEval QA dev: {n} rows, {2 * n} decisions; 5-fold CV grouped by row (ChatGPT reference: {CHATGPT:.1%} accuracy)")
    print(f"{'system':28s} {'accuracy':>9s} {'pairwise':>9s}   per-fold choice: threshold or (weight, threshold)")
    for name, s in systems.items():
        ch = ", ".join(f"({f['weight']}, {f['threshold']:.2f})" if name.startswith("combined (") else f"{f['threshold']:.2f}"
                       for f in s["folds"])
        print(f"{name:28s} {s['accuracy']:9.1%} {s['pairwise']:9.1%}   {ch}")
    print(f"{'auto (weight ' + str(W0) + ', CV threshold)':28s} {auto_cv['accuracy']:9.1%} {'':9s}   same decisions as 'always': "
          f"{auto_cv['agreement_with_always']:.1%}, claims embedded: {auto_cv['claims_embedded']:.1%}")
    print(f"\nmade-up RAG paraphrase check (40 claims about the latency contexts; written for this benchmark)")
    print(f"{'system':28s} {'weight':>6s} {'thresh':>6s} {'accuracy':>9s} {'false alarms':>13s} {'misses':>7s}")
    for name, v in rag.items():
        print(f"{name:28s} {str(v['weight']):>6s} {v['threshold']:6.2f} {v['accuracy']:9.1%} {v['false_alarms']:>10d}/20 {v['misses']:>4d}/20")
    print(f"\nlatency, ms, torch threads {torch.get_num_threads()} (3-sentence answers, 3 contexts of ~150 words; "
          f"warm: contexts seen before, cold: caches cleared)")
    print(f"{'mode, answer':22s} {'warm p50':>9s} {'warm p99':>9s} {'cold p50':>9s} {'cold p99':>9s} {'embedded':>9s}")
    for k, v in lat.items():
        if "cold_p50" in v:
            print(f"{k:22s} {v['warm_p50']:9.2f} {v['warm_p99']:9.2f} {v['cold_p50']:9.2f} {v['cold_p99']:9.2f} {v['embedded']:>7d}/3")
        else: print(f"{k:22s} {v['warm_p50']:9.2f} {v['warm_p99']:9.2f}   (per HaluEval answer, first sight of each knowledge)")
    result = {"data": str(args.data), "rows": n, "decisions": 2 * n, "chatgpt_reference": CHATGPT,
              "defaults": {"weight": W0, "threshold": G.THRESHOLD, "miss_penalty": P, "lex_confident": G.LEX_CONFIDENT},
              "systems": {k: {"accuracy": round(v["accuracy"], 4), "pairwise": round(v["pairwise"], 4), "folds": v["folds"]}
                          for k, v in systems.items()},
              "auto_cv": {k: round(v, 4) for k, v in auto_cv.items()}, "rag_check": rag,
              "latency_ms": {m: {k: round(x, 3) for k, x in v.items()} for m, v in lat.items()}, "torch_threads": torch.get_num_threads()}
    print(json.dumps(result, separators=(",", ":")))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp"); tmp.write_text(json.dumps(result, indent=1)); tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
