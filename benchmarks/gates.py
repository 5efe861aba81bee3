"""Gates: false-alarm rate and power of the paired `no_regression` gate against a raw threshold on the mean.

    .venv/bin/python benchmarks/gates.py [--cases 200] [--seeds 1000] [--resamples 2000] [--alpha 0.05]
                                         [--thresholds 0.01 0.02] [--drops 0.05 0.02] [--affected 0.3] [--out FILE.json]

A simulated suite of `--cases` cases whose difficulty varies from case to case, drawn afresh for every seed:
* exact match: case i succeeds with probability p_i ~ Beta(2, 2) (binary, tested with McNemar);
* token F1: case i scores F1 ~ Beta(m_i k, (1 - m_i) k), m_i ~ Beta(2, 2), k = 10 (continuous, paired bootstrap).
Every comparison is two independent runs (different seeds) evaluated on the same cases:
* A/A: both runs are the same system: every failure is a false alarm;
* degraded: the candidate's success probability and mean F1 drop on a random `--affected` fraction of the cases, by
  `drop / affected` each, so the expected drop of the suite's mean is `drop` (5 and 2 points by default; clipping at 0
  makes the realised drop slightly smaller: it is reported).
Gates, each per metric:
* paired: `llmops_nb.gates.gate(candidate, rules, baseline=...)` with `{metric: M, no_regression: true}` at `--alpha`
  (a one-sided test); the whole pipeline runs (EvalResult objects, case pairing, compare, rules);
* raw t: "fail when the candidate's mean < the baseline's mean - t", for each t of `--thresholds`;
* raw matched: the raw threshold set to the A/A 95th percentile of the mean drop, i.e. tuned (with hindsight, on
  this very simulation) to the paired gate's false-alarm budget: how much power a threshold gets at equal false alarms.
`--resamples` bootstrap resamples per comparison: 2000 keeps the default run near a minute on one core; the
p-values near alpha move by about +-0.005 with it, which does not move the rates beyond their sampling error.
Prints a table and the JSON of all figures (also written to --out).
"""
import argparse, json, os, sys, time, warnings
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

METRICS = ("exact_match", "token_f1")


def suite(rng, n: int) -> tuple:
    "Per-case success probabilities (exact match) and mean F1s of a suite with heterogeneous difficulty."
    return rng.beta(2, 2, n), rng.beta(2, 2, n)


def run(rng, p, m, k: float = 10.0):
    "One evaluation run: per-case exact match (0/1) and token F1."
    em = (rng.random(len(p)) < p).astype(float)
    mm = np.clip(m, 0.005, 0.995)
    return em, rng.beta(mm * k, (1 - mm) * k)


def as_result(em, f1):
    from llmops_nb.suites import EvalResult
    cases = [{"id": f"q{i}", "exact_match": e, "token_f1": f} for i, (e, f) in enumerate(zip(em.tolist(), f1.tolist()))]
    aggs = {"exact_match": {"mean": float(em.mean())}, "token_f1": {"mean": float(f1.mean())}}
    return EvalResult("sim", "sim-suite", list(METRICS), cases, aggs, {}, {})


def simulate(args) -> dict:
    from llmops_nb.gates import gate, load_rules
    rules = load_rules({"alpha": args.alpha, "rules": [{"metric": m, "no_regression": True} for m in METRICS]})
    scenarios = ["A/A"] + [f"drop {d * 100:g} pts" for d in args.drops]
    fails = {s: {m: [] for m in METRICS} for s in scenarios}        # paired gate outcome per seed
    drops = {s: {m: [] for m in METRICS} for s in scenarios}        # baseline mean - candidate mean per seed
    realised = {s: {m: [] for m in METRICS} for s in scenarios}     # expected drop after clipping
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        p, m = suite(rng, args.cases)
        base = run(rng, p, m)
        for s, d in zip(scenarios, [0.0, *args.drops]):
            hit = rng.random(args.cases) < args.affected
            pc, mc = p.copy(), m.copy()
            pc[hit] = np.clip(pc[hit] - d / args.affected, 0, 1); mc[hit] = np.clip(mc[hit] - d / args.affected, 0.005, 1)
            cand = run(rng, pc, mc)
            v = gate(as_result(*cand), rules, baseline=as_result(*base), n_resamples=args.resamples, seed=seed)
            for j, name in enumerate(METRICS):
                fails[s][name].append(v.checks[j]["status"] == "fail")
                drops[s][name].append(base[j].mean() - cand[j].mean())
            realised[s]["exact_match"].append(p.mean() - pc.mean()); realised[s]["token_f1"].append(np.clip(m, 0.005, 0.995).mean() - np.clip(mc, 0.005, 0.995).mean())
    out = {"config": vars(args), "scenarios": {}}
    for name in METRICS:
        matched = float(np.quantile(drops["A/A"][name], 1 - args.alpha))      # raw threshold with alpha false alarms in A/A
        out.setdefault("matched_threshold", {})[name] = matched
        for s in scenarios:
            dr = np.array(drops[s][name])
            row = {"paired": float(np.mean(fails[s][name])), **{f"raw t={t:g}": float(np.mean(dr > t)) for t in args.thresholds},
                   "raw matched": float(np.mean(dr > matched)), "realised_drop": float(np.mean(realised[s][name]))}
            out["scenarios"].setdefault(s, {})[name] = row
    aa = out["scenarios"]["A/A"]
    out["false_alarm_ratio_raw_over_paired"] = {name: {f"t={t:g}": (aa[name][f"raw t={t:g}"] / aa[name]["paired"] if aa[name]["paired"] else None)
                                                       for t in args.thresholds} for name in METRICS}
    se = float(np.sqrt(args.alpha * (1 - args.alpha) / args.seeds))
    out["aa_standard_error"] = se
    return out


def table(out: dict) -> str:
    cols = None
    lines = []
    for s, per in out["scenarios"].items():
        for name, row in per.items():
            if cols is None:
                cols = [k for k in row if k != "realised_drop"]
                lines.append(f"{'scenario':<14}{'metric':<13}{'drop':>7}  " + "  ".join(f"{c:>12}" for c in cols))
            lines.append(f"{s:<14}{name:<13}{row['realised_drop']:>7.3f}  " + "  ".join(f"{row[c]:>12.3f}" for c in cols))
    lines.append("rows: A/A = false-alarm rate, degraded = detection rate (power); drop = realised expected drop of the mean")
    lines.append("matched raw thresholds (A/A 95th percentile of the mean drop): " +
                 ", ".join(f"{k} {v:.4f}" for k, v in out["matched_threshold"].items()))
    for name, r in out["false_alarm_ratio_raw_over_paired"].items():
        lines.append(f"false-alarm ratio raw/paired, {name}: " + ", ".join(f"{k}: {v:.1f}x" if v else f"{k}: paired had none" for k, v in r.items()))
    lines.append(f"A/A rate standard error at alpha: {out['aa_standard_error']:.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=200, help="cases per suite")
    ap.add_argument("--seeds", type=int, default=1000, help="simulated comparisons per scenario")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per comparison")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.02], help="raw gate thresholds on the mean drop")
    ap.add_argument("--drops", type=float, nargs="+", default=[0.05, 0.02], help="expected drops of the mean in the degraded scenarios")
    ap.add_argument("--affected", type=float, default=0.3, help="fraction of cases a degradation touches")
    ap.add_argument("--out", help="write the JSON here too")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    t = time.time()
    out = simulate(args)
    out["seconds"] = round(time.time() - t, 1)
    print(table(out))
    print(f"({out['seconds']} s)")
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        from llmops_nb.core import atomic_write
        atomic_write(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
