"""Drift: `drift_report` time on 100,000 stored traces (target <= 10 s), against named baselines.

Rows: `--n` (default 100,000) synthetic TraceStore rows with the columns drift reads (question_chars,
answer_chars, total_ms, completion_tokens, feedback_score on 20% of rows, input/output_action, status), split in
two windows of n/2; the current window has longer answers, more input blocks and slower requests. Question
embeddings: synthetic L2-normalized 384-d vectors (a mixture of 12 "topic" directions; the current window adds a
13th), passed as `embeddings=` so the timing is the statistics', not the model's. Subsampling (documented in
`drift_report`): MMD on 1,000 rows per window (200 permutations), topics fitted on 2,000 reference rows and
assigned to all n rows, the optional classifier test on 2,000 rows per window; PSI, KS and rate tests use every row.

Baselines, same run:
  (a) exact full-size MMD with the same kernel, no subsampling, at n=5,000 per window with 200 permutations: time
      measured, and the time at 50,000 per window extrapolated (quadratic in n; its kernel matrix alone would be
      100,000^2 floats = 80 GB);
  (b) scipy's `ks_2samp` (method auto) over the same numeric features, against our `ks`.
MiniLM embedding throughput (the real cost of embedding drift; a real store caches one vector per distinct
question) is measured on `--embed-n` questions with the packaged model, uncached, so the reader can extrapolate.

    .venv/bin/python benchmarks/drift.py [--n 100000] [--embed-n 400] [--threads 1]
"""
import argparse, os, time
ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=100_000)
ap.add_argument("--embed-n", type=int, default=400)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"): os.environ[v] = str(a.threads)
import numpy as np, pandas as pd
from scipy import stats
from llmops_nb.drift import EMBEDDING_TESTS, NUMERIC, _mmd2, _rbf, drift_report, ks

def window(n, seed, shifted):
    g = np.random.default_rng(seed)
    return pd.DataFrame({"question": [f"question {i}" for i in range(n)],
                         "question_chars": g.lognormal(4, .5, n).round(), "answer_chars": g.normal(440 if shifted else 400, 80, n).round(),
                         "total_ms": g.gamma(4, 230 if shifted else 200, n), "completion_tokens": g.poisson(90, n),
                         "input_action": np.where(g.random(n) < (.03 if shifted else .02), "block", "allow"),
                         "output_action": np.where(g.random(n) < .01, "block", "allow"),
                         "status": g.choice(["answered", "idk", "refused", "error"], n, p=[.88, .07, .03, .02]),
                         "feedback_score": np.where(g.random(n) < .2, g.integers(0, 2, n), np.nan)})

def vectors(n, seed, topics):
    g = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 1, (13, 384))
    v = centres[g.integers(0, topics, n)] + g.normal(0, 1.2, (n, 384))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

h = a.n // 2
ref, cur = window(h, a.seed, False), window(a.n - h, a.seed + 1, True)
re, ce = vectors(h, a.seed + 2, 12), vectors(a.n - h, a.seed + 3, 13)
print(f"{a.n:,} traces ({h:,} + {a.n - h:,}), {a.threads} thread(s)")

def best(fn, rounds=3):
    ts = []
    for _ in range(rounds):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return min(ts), out

t_rep, rep = best(lambda: drift_report(ref, cur, embeddings=(re, ce)))
print(f"drift_report (numeric + rates + MMD + topics): {t_rep:.2f} s  (target <= 10 s: {'PASS' if t_rep <= 10 else 'FAIL'})")
print("  drifted:", rep.features)
t_all, rep_all = best(lambda: drift_report(ref, cur, embeddings=(re, ce), tests=EMBEDDING_TESTS), rounds=1)
print(f"drift_report with the classifier test too: {t_all:.2f} s")

# (a) exact full-size MMD at 5,000 per window
m = 5000
def full_mmd():
    z = np.concatenate([re[:m], ce[:m]]).astype(np.float64)
    K, _ = _rbf(z); a0 = np.r_[np.ones(m), np.zeros(m)]
    g = np.random.default_rng(0)
    A = np.stack([g.permutation(a0) for _ in range(200)], 1)
    return [_mmd2(K, A[:, i:i + 50], m, m) for i in range(0, 200, 50)]
t_full, _ = best(full_mmd, rounds=1)
t_ext = t_full * (h / m) ** 2
print(f"(a) exact MMD, 200 permutations, {m:,} per window: {t_full:.2f} s; at {h:,} per window ~{t_ext:,.0f} s (quadratic extrapolation) "
      f"-> the whole subsampled report is {t_ext / t_rep:,.0f}x faster than full-size MMD alone")

# (b) KS: ours vs scipy's ks_2samp over the numeric features
cols = [c for c in NUMERIC]
vals = [(pd.to_numeric(ref[c]).dropna().to_numpy(), pd.to_numeric(cur[c]).dropna().to_numpy()) for c in cols]
t_ours, _ = best(lambda: [ks(x, y) for x, y in vals])
t_scipy, _ = best(lambda: [stats.ks_2samp(x, y) for x, y in vals])
print(f"(b) KS over {len(cols)} features: ours {t_ours * 1000:.0f} ms, scipy ks_2samp {t_scipy * 1000:.0f} ms (ratio scipy/ours {t_scipy / t_ours:.2f}x)")

# MiniLM throughput
if a.embed_n:
    import torch; torch.set_num_threads(a.threads)
    from llmops_nb.embeddings import Embedder
    g = np.random.default_rng(1)
    topics = ["Where is my order", "How do I get a refund for", "Why was I charged twice for", "How do I descale the", "Is there a warranty on the"]
    qs = [f"{g.choice(topics)} {g.choice(['kettle', 'toaster', 'blender', 'air fryer'])} number {i}?" for i in range(a.embed_n)]
    e = Embedder(cache=False); e.encode(qs[:8])                       # load the model outside the timing
    t = time.perf_counter(); e.encode(qs); t_emb = time.perf_counter() - t
    rate = a.embed_n / t_emb
    print(f"MiniLM embedding: {rate:.0f} questions/s ({a.embed_n} questions, {a.threads} thread(s)); embedding all {a.n:,} would take "
          f"~{a.n / rate:.0f} s once (cached per distinct question afterwards); drift_report embeds at most 2,000 per window: ~{4000 / rate:.0f} s uncached")
