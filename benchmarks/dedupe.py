"""Near-duplicate detection: throughput (MB/s) and recall/precision of `llmops_nb.data.dedupe` on perturbed copies.

Base documents are built from sentences of the sample corpus; a share of them get perturbed copies (words
deleted, inserted, replaced, swapped with a neighbour) at 2%, 5% and 10% edit rates. Ground truth is the copy -> original link. Baseline in the
same run: exact-digest deduplication (what a hash set gives), whose recall on edited copies shows what
MinHash adds, and its throughput for the cost ratio.

    .venv/bin/python benchmarks/dedupe.py [--docs 3000] [--copies 0.3] [--threshold 0.8] [--seed 0]
"""
import argparse, random, re, time
from pathlib import Path
from llmops_nb.data import Document, clean_documents, dedupe, load_documents
from llmops_nb.core import digest

ap = argparse.ArgumentParser()
ap.add_argument("--docs", type=int, default=3000)
ap.add_argument("--copies", type=float, default=0.3, help="share of base documents that get a perturbed copy")
ap.add_argument("--threshold", type=float, default=0.7)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--ngram", type=int, default=2)
ap.add_argument("--num-perm", type=int, default=128)
a = ap.parse_args()
rng = random.Random(a.seed)

root = Path(__file__).resolve().parent.parent / "data" / "sample"
corpus = clean_documents(load_documents(root, exclude=["qa.jsonl", "sft.jsonl", "README.md", "eval/*"]))
sentences = sorted({s.strip() for d in corpus for s in re.split(r"(?<=[.!?])\s+|\n+", d.text) if len(s.split()) >= 6})
words = sorted({w for s in sentences for w in s.split()})

def perturb(text: str, rate: float) -> str:
    "Edit `rate` of the words: delete, insert, replace, or swap with the neighbour (the edits of a revised draft)."
    toks = text.split()
    for _ in range(max(1, int(rate * len(toks)))):
        i, op = rng.randrange(len(toks) - 1), rng.random()
        if op < 0.25 and len(toks) > 5: toks.pop(i)
        elif op < 0.5: toks.insert(i, rng.choice(words))
        elif op < 0.75: toks[i] = rng.choice(words)
        else: toks[i], toks[i + 1] = toks[i + 1], toks[i]
    return " ".join(toks)

base = [Document(f"d{i}", " ".join(rng.sample(sentences, rng.randint(8, 20)))) for i in range(a.docs)]
rates = [0.02, 0.05, 0.10]
copies, truth = [], {}
for d in rng.sample(base, int(a.copies * a.docs)):
    rate = rng.choice(rates)
    c = Document(f"{d.id}-copy{rate}", perturb(d.text, rate)); copies.append(c); truth[c.id] = (d.id, rate)
docs = base + copies
rng.shuffle(docs)
order = {d.id: i for i, d in enumerate(docs)}
docs.sort(key=lambda d: (d.id.count("copy"), order[d.id]))   # originals first, so each copy has its original to match
mb = sum(len(d.text.encode()) for d in docs) / 1e6

def score(report):
    dropped = {r["id"]: r["duplicate_of"] for r in report}
    tp = sum(1 for c, (orig, _) in truth.items() if dropped.get(c) == orig)
    per_rate = {r: (sum(1 for c, (o, rr) in truth.items() if rr == r and dropped.get(c) == o), sum(1 for (_, rr) in truth.values() if rr == r)) for r in rates}
    false = sum(1 for i in dropped if i not in truth)
    return tp / max(1, len(truth)), (len(dropped) - false) / max(1, len(dropped)), per_rate, len(dropped)

def exact_only(docs):
    seen, report = {}, []
    for d in docs:
        k = digest(" ".join(d.text.lower().split()).encode())
        if k in seen: report.append({"id": d.id, "duplicate_of": seen[k]})
        else: seen[k] = d.id
    return report

dedupe(docs[:50], threshold=a.threshold, ngram=a.ngram, num_perm=a.num_perm)   # warm-up: imports (datasketch pulls in scipy)
t = time.perf_counter(); base_report = exact_only(docs); t_base = time.perf_counter() - t
t = time.perf_counter(); kept, report = dedupe(docs, threshold=a.threshold, ngram=a.ngram, num_perm=a.num_perm); t_ours = time.perf_counter() - t
r_b, p_b, _, n_b = score(base_report)
r_o, p_o, per_rate, n_o = score(report)
print(f"corpus: {len(docs)} documents ({len(copies)} perturbed copies), {mb:.2f} MB, threshold {a.threshold}, seed {a.seed}")
print(f"{'method':<22}{'MB/s':>8}{'docs/s':>10}{'recall':>9}{'precision':>11}{'dropped':>9}")
print(f"{'exact digest (baseline)':<22}{mb / t_base:>8.2f}{len(docs) / t_base:>10.0f}{r_b:>9.3f}{p_b:>11.3f}{n_b:>9}")
print(f"{'dedupe (MinHash LSH)':<22}{mb / t_ours:>8.2f}{len(docs) / t_ours:>10.0f}{r_o:>9.3f}{p_o:>11.3f}{n_o:>9}")
print("recall by edit rate: " + ", ".join(f"{int(r * 100)}% of words edited: {hit}/{n} = {hit / max(1, n):.3f}" for r, (hit, n) in per_rate.items()))
print(f"throughput ratio dedupe / exact-digest baseline: {(mb / t_ours) / (mb / t_base):.3f}x")
