"""Retrieval: filtered-search completeness and speed, approximate-index recall and speed, embedding throughput.

Corpus: `--n` (default 100,000) generated support notes about the sample company's products (templates filled
from a seeded RNG: product, problem, context, outcome), embedded with the packaged all-MiniLM-L6-v2 (real
embeddings, not random vectors), plus `--queries` generated questions. Each note gets a `bucket` (100 values:
a filter on one matches 1%) and a `shard` (10 values: 10%).

(a) Filtered search, k=10, at 1% and 10% selectivity: completeness (share of queries answered with k hits)
    and QPS of `VectorStore.search(where=...)` (pre-filtering with FAISS ID selectors), against the
    over-fetch-then-filter approach common wrappers use (fetch 4k from the index, keep matches), same run,
    same flat index. The pre-filtered flat results are also checked against brute force over the matches.
    Pre-filtered HNSW (ef_search 64) is reported too.
(b) HNSW and IVF: recall@10 against flat and QPS ratio to flat, unfiltered, one query at a time, 1 FAISS
    thread (target: recall@10 >= 0.95 at >= 5x flat QPS), over a small sweep of ef_search / nprobe.
(c) Indexing throughput: `Embedder.embed` (hashing, cache lookups, cache writes into an empty cache) against
    calling `SentenceTransformer.encode` directly on the same texts (target >= 0.95x), best of `--rounds`.

The corpus and query embeddings take minutes on a 2-core CPU, so they are cached in
`/tmp/llmops-bench/retrieval-<digest of n, queries, seed, model>.npz` (outside the repo; delete it to
re-embed). Run from the repository root:

    .venv/bin/python benchmarks/retrieval.py [--n 100000] [--queries 1000] [--seed 0] [--embed-n 4000] [--rounds 2]
"""
import argparse, os, random, tempfile, time
from pathlib import Path
import numpy as np
import faiss
from llmops_nb.core import digest, load_settings
from llmops_nb.embeddings import Embedder
from llmops_nb.retrieval import VectorStore

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=100_000)
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--embed-n", type=int, default=4000, help="texts for the embedding throughput comparison (c)")
ap.add_argument("--rounds", type=int, default=2)
a = ap.parse_args()
K = a.k

# ---------------------------------------------------------------- generated corpus
PRODUCTS = ["Brisk kettle", "Kettle Pro KT-300P", "travel kettle", "2-slot toaster", "4-slot toaster", "Toaster Pro TS-400P",
            "BL-900P blender", "personal blender", "hand blender", "espresso machine", "bean-to-cup coffee machine", "filter coffee maker",
            "air fryer", "dual-basket air fryer", "Air Fryer Pro AF-550P", "cordless vacuum", "robot vacuum", "bagless vacuum cleaner",
            "milk frother", "descaling kit", "water filter cartridge", "replacement carafe", "blender jug", "vacuum battery pack"]
PROBLEMS = ["stopped heating", "trips the fuse", "leaks from the base", "makes a grinding noise", "shows error E3", "shows error E7",
            "will not switch on", "smells of burning plastic", "turns off after a few seconds", "has a cracked lid", "arrived dented",
            "is missing the power cable", "keeps beeping", "heats unevenly", "loses suction", "will not pair with the app",
            "blinks red", "produces weak coffee", "overflows", "vibrates across the counter", "has a loose handle", "rusts inside",
            "charges very slowly", "displays the wrong time", "jams halfway", "spills when pouring", "is louder than expected"]
CONTEXTS = ["two days after delivery", "after a firmware update", "since the last descaling", "after eleven months of daily use",
            "on the first use", "after moving house", "when used with the eco mode", "after a power cut", "right after unboxing",
            "when the water tank is full", "after three weeks", "during the warranty period", "just after the warranty ended",
            "when bought as a gift", "after cleaning it in the dishwasher", "when used abroad with an adapter"]
OUTCOMES = ["a replacement was shipped by express", "the customer got a full refund", "store credit with the 10% bonus was issued",
            "a repair was booked at the Leipzig service centre", "the agent walked them through a reset", "a spare part was posted",
            "the case was escalated to the product team", "the return label was emailed", "the customer kept it with a partial refund",
            "loyalty points were added as a goodwill gesture", "the ticket was closed as user error", "a technician visit was arranged"]
CUSTOMERS = ["A Kestrel Circle Gold member", "A first-time buyer", "A customer in Vienna", "A customer in Seattle", "A business account",
             "A customer who bought online", "A customer who bought in the Berlin store", "A customer in Toronto", "A reseller",
             "A customer with a gift receipt", "A returning customer", "A customer in Madrid"]
QUESTIONS = ["What happens when a {p} {x}?", "My {p} {x} {c}, what can I do?", "Can I get a refund if the {p} {x}?",
             "How do you fix a {p} that {x}?", "Is it covered by warranty when a {p} {x} {c}?"]

def note(rng):
    p, x, c, o, who = rng.choice(PRODUCTS), rng.choice(PROBLEMS), rng.choice(CONTEXTS), rng.choice(OUTCOMES), rng.choice(CUSTOMERS)
    return f"{who} reported that the {p} {x} {c}; {o}."

def question(rng):
    return rng.choice(QUESTIONS).format(p=rng.choice(PRODUCTS), x=rng.choice(PROBLEMS), c=rng.choice(CONTEXTS))

rng = random.Random(a.seed)
texts = [note(rng) for _ in range(a.n)]
queries = [question(rng) for _ in range(a.queries)]
ids = [f"n{i}" for i in range(a.n)]
metas = [{"bucket": i % 100, "shard": i % 10} for i in range(a.n)]

settings = load_settings()
emb = Embedder(cache=False, settings=settings)
cache = Path(tempfile.gettempdir()) / "llmops-bench" / f"retrieval-{digest([a.n, a.queries, a.seed, emb.model_id, 'v1'])[:16]}.npz"
if cache.exists():
    z = np.load(cache, allow_pickle=False); X, Q = z["X"], z["Q"]
    print(f"embeddings: read {X.shape[0]:,} + {Q.shape[0]:,} from {cache}")
else:
    t = time.perf_counter()
    X, Q = emb.embed(texts), emb.embed(queries)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz"); np.savez(tmp, X=X, Q=Q); os.replace(tmp, cache)
    print(f"embeddings: computed {X.shape[0]:,} + {Q.shape[0]:,} in {time.perf_counter() - t:.0f} s, cached in {cache}")
print(f"corpus: {a.n:,} generated notes, {len(set(texts)):,} distinct; {a.queries} queries; dim {X.shape[1]}; faiss {faiss.__version__}\n")

faiss.omp_set_num_threads(1)
import torch; torch.set_num_threads(1)

def timed(fn, items):
    t = time.perf_counter(); out = [fn(i, x) for i, x in enumerate(items)]; return out, len(items) / (time.perf_counter() - t)

def build(kind, **kw):
    s = VectorStore(emb, index=kind, **kw)
    faiss.omp_set_num_threads(2)                       # building may use both cores; searching uses one
    t = time.perf_counter(); s.add(ids, texts, metas, embeddings=X); dt = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    return s, dt

flat, t_flat = build("flat")
print(f"flat index: {a.n:,} chunks added in {t_flat:.1f} s")

# ---------------------------------------------------------------- (a) filtered search
print(f"\n(a) filtered search, k={K}: pre-filter (FAISS ID selector) vs over-fetch {4 * K} then filter, same flat index")
rows = []
for field, nvals, label in [("bucket", 100, "1%"), ("shard", 10, "10%")]:
    wheres = [{field: i % nvals} for i in range(len(Q))]
    for w in wheres[:nvals]: flat.ids(w)                        # warm the per-filter selections, as a long-running service would have
    pre, qps_pre = timed(lambda i, q: flat.search(q, k=K, where=wheres[i]), Q)
    def post(i, q):
        D, I = flat.index.search(q[None], 4 * K)
        return [l for l in I[0] if l >= 0 and flat._metas[l][field] == wheres[i][field]][:K]
    postr, qps_post = timed(post, Q)
    exact = 0
    for i in range(0, len(Q), 10):                              # brute force over the matching chunks
        match = np.flatnonzero(np.arange(a.n) % nvals == wheres[i][field])
        best = np.sort(X[match] @ Q[i])[::-1][:K]
        exact += np.allclose([h.score for h in pre[i]], best, atol=1e-5)
    rows.append((label, np.mean([len(r) == K for r in pre]), qps_pre, np.mean([len(r) == K for r in postr]), qps_post,
                 np.mean([len(r) for r in postr]), exact / len(range(0, len(Q), 10))))
print(f"{'selectivity':>11} | {'pre: complete':>13} {'QPS':>7} | {'post: complete':>14} {'QPS':>7} {'mean hits':>9} | {'pre == brute force':>18}")
for label, c_pre, q_pre, c_post, q_post, mh, ex in rows:
    print(f"{label:>11} | {c_pre:>13.1%} {q_pre:>7.0f} | {c_post:>14.1%} {q_post:>7.0f} {mh:>9.2f} | {ex:>18.1%}")
for label, c_pre, q_pre, c_post, q_post, mh, ex in rows:
    print(f"  {label}: completeness {c_pre:.1%} vs {c_post:.1%} (+{(c_pre - c_post) * 100:.1f} points); QPS ratio pre/post {q_pre / q_post:.2f}x")

# ---------------------------------------------------------------- (b) approximate indexes
print(f"\n(b) approximate indexes vs flat, unfiltered, k={K}, one query at a time, 1 FAISS thread")
truth, qps_flat = timed(lambda i, q: {h.id for h in flat.search(q, k=K)}, Q)
print(f"flat: {qps_flat:.0f} QPS")
hnsw, t_hnsw = build("hnsw", M=32, ef_construction=80)
ivf, t_ivf = build("ivf")
print(f"hnsw (M=32, ef_construction=80): built in {t_hnsw:.1f} s;  ivf (nlist={ivf.index.nlist}, trained on the first batch): built in {t_ivf:.1f} s")
print(f"{'index':>24} | {'recall@10':>9} {'QPS':>7} {'x flat':>7} | target >= 0.95 at >= 5x")
best = {}
for name, store, key, values in [("hnsw", hnsw, "ef_search", (16, 32, 64, 128)), ("ivf", ivf, "nprobe", (4, 8, 16, 32, 64))]:
    for v in values:
        store.params[key] = v
        got, qps = timed(lambda i, q: {h.id for h in store.search(q, k=K)}, Q)
        rec = np.mean([len(g & t) / K for g, t in zip(got, truth)])
        ok = rec >= 0.95 and qps / qps_flat >= 5
        print(f"{f'{name} {key}={v}':>24} | {rec:>9.3f} {qps:>7.0f} {qps / qps_flat:>6.1f}x | {'meets' if ok else ''}")
        if ok and name not in best: best[name] = (f"{key}={v}", rec, qps / qps_flat)
for name in ("hnsw", "ivf"):
    print(f"  {name}: " + ("first setting meeting the target: {} with recall@10 {:.3f} at {:.1f}x flat QPS".format(*best[name]) if name in best else "no setting met the target"))

hnsw.params["ef_search"] = 64
wheres = [{"bucket": i % 100} for i in range(len(Q))]
for w in wheres[:100]: hnsw.ids(w)
pre_h, qps_h = timed(lambda i, q: hnsw.search(q, k=K, where=wheres[i]), Q)
print(f"  hnsw ef_search=64 with a 1% filter: complete {np.mean([len(r) == K for r in pre_h]):.1%}, {qps_h:.0f} QPS "
      f"({a.n // 100:,} matches <= exact_below={hnsw.params['exact_below']}: exact search over them)")
wheres = [{"shard": i % 10} for i in range(len(Q))]
for w in wheres[:10]: hnsw.ids(w)
pre_h, qps_h = timed(lambda i, q: hnsw.search(q, k=K, where=wheres[i]), Q)
flat_f = [{h.id for h in flat.search(q, k=K, where=wheres[i])} for i, q in enumerate(Q)]
print(f"  hnsw ef_search=64 with a 10% filter: complete {np.mean([len(r) == K for r in pre_h]):.1%}, recall@10 vs flat "
      f"{np.mean([len({h.id for h in r} & f) / K for r, f in zip(pre_h, flat_f)]):.3f}, {qps_h:.0f} QPS")

# ---------------------------------------------------------------- (c) embedding throughput
print(f"\n(c) indexing throughput: Embedder.embed (empty cache, writes included) vs SentenceTransformer.encode, {a.embed_n:,} new texts")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
rng = random.Random(a.seed + 1)
model = emb.model
res = {"encode": [], "embed": []}
for r in range(a.rounds):
    batch = [note(rng) + f" (case {r}-{i})" for i in range(a.embed_n)]   # new texts each round: nothing is cached
    t = time.perf_counter(); model.encode(batch, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    res["encode"].append(a.embed_n / (time.perf_counter() - t))
    batch = [b + " " for b in batch]
    with tempfile.TemporaryDirectory() as d:
        e = Embedder(cache=d, settings=settings)
        t = time.perf_counter(); e.embed(batch); res["embed"].append(a.embed_n / (time.perf_counter() - t))
enc, emb_rate = max(res["encode"]), max(res["embed"])
print(f"SentenceTransformer.encode: {enc:.0f} texts/s;  Embedder.embed: {emb_rate:.0f} texts/s  (best of {a.rounds}, {torch.get_num_threads()} threads)")
print(f"  ratio Embedder / encode: {emb_rate / enc:.3f}x (target >= 0.95x)")
