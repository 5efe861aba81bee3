"Metrics of llmops_nb.eval against their reference implementations on randomized inputs, and bad input."
import math, random, re, string, sys, time, types, unicodedata, warnings
from collections import Counter

import numpy as np
import pytest

from llmops_nb.eval import (METRICS, MetricInfo, UnicodeTokenizer, answer_relevance, block_rate, bleu, chrf, cost, exact_match,
                            groundedness, latency_summary, load_metric, metric_info, normalize_answer, perplexity, refusal_rate,
                            retrieval_scores, rouge, token_f1)

WORDS = ("cat dog mat house river stone garden window table chair running runner runs ran quickly happily warranty delivery "
         "product returns policy customer support order shipping refund account password battery charger screen printer "
         "blue green red small large new old fast slow early late before after under over between through").split()
ARTICLES = ["a", "an", "the", "A", "An", "The", "THE"]
ODD = ["café", "naïve", "Привет", "мир", "東京", "x-ray", "don't", "U.S.", "3.14", "42", "e-mail", "rock'n'roll", "snake_case", "Ärger"]


# ---------------------------------------------------------------- SQuAD v1.1, restated from the official evaluate script
def squad_normalize(s):
    def remove_articles(text): return re.sub(r"\b(a|an|the)\b", " ", text)
    def white_space_fix(text): return " ".join(text.split())
    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)
    def lower(text): return text.lower()
    return white_space_fix(remove_articles(remove_punc(lower(s))))

def squad_f1(prediction, ground_truth):
    prediction_tokens = squad_normalize(prediction).split()
    ground_truth_tokens = squad_normalize(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0: return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)

def squad_em(prediction, ground_truth): return squad_normalize(prediction) == squad_normalize(ground_truth)

def squad_max(metric_fn, prediction, ground_truths): return max(metric_fn(prediction, gt) for gt in ground_truths)


def noisy_text(rng, n_min=0, n_max=12):
    "Random words with articles, case changes, punctuation, odd tokens and irregular whitespace."
    out = []
    for _ in range(rng.randint(n_min, n_max)):
        r = rng.random()
        w = rng.choice(ARTICLES) if r < 0.2 else rng.choice(ODD) if r < 0.3 else rng.choice(WORDS)
        if rng.random() < 0.2: w = w.upper() if rng.random() < 0.5 else w.capitalize()
        if rng.random() < 0.15: w += rng.choice(string.punctuation)
        if rng.random() < 0.05: w = rng.choice(string.punctuation) + w
        out.append(w)
    return "".join(w + rng.choice([" ", " ", "  ", "\t", "\n"]) for w in out).strip(" ") if out else rng.choice(["", " ", "the", "?!"])

def perturb(rng, text):
    "A prediction near `text`: words dropped, replaced, shuffled or recased."
    ws = text.split()
    ws = [w for w in ws if rng.random() > 0.25]
    ws = [rng.choice(WORDS) if rng.random() < 0.2 else w for w in ws]
    if rng.random() < 0.3: rng.shuffle(ws)
    if rng.random() < 0.3: ws = [w.lower() for w in ws]
    return " ".join(ws)


def test_squad_matches_official_definitions_on_random_pairs():
    rng = random.Random(0)
    both_empty = 0
    for i in range(600):
        ref = noisy_text(rng)
        pred = ref if i % 10 == 0 else ref.upper() + "." if i % 10 == 1 else perturb(rng, ref) if i % 3 else noisy_text(rng)
        assert normalize_answer(pred) == squad_normalize(pred)
        assert exact_match(pred, ref) == float(squad_em(pred, ref))
        if not squad_normalize(pred) and not squad_normalize(ref):
            both_empty += 1
            assert token_f1(pred, ref) == 1.0                # SQuAD v2.0's rule (v1.1 gave 0): agrees with exact match
        else:
            assert token_f1(pred, ref) == pytest.approx(squad_f1(pred, ref), abs=1e-12)
        refs = [ref] + [noisy_text(rng) for _ in range(rng.randint(0, 3))]
        assert exact_match(pred, refs) == float(squad_max(squad_em, pred, refs))
        if all(squad_normalize(r) for r in refs) and squad_normalize(pred):
            assert token_f1(pred, refs) == pytest.approx(squad_max(squad_f1, pred, refs), abs=1e-12)
    assert both_empty > 0                                    # the generator does reach that corner


def test_squad_scores_vary():
    rng = random.Random(1)
    f1 = [token_f1(perturb(rng, r), r) for r in (noisy_text(rng, 3) for _ in range(200))]
    assert 0.2 < np.mean(f1) < 0.95 and len(set(np.round(f1, 3))) > 20


# ---------------------------------------------------------------- ROUGE against rouge-score
def sentence(rng, vocab=WORDS):
    ws = [rng.choice(vocab) for _ in range(rng.randint(2, 12))]
    return " ".join([ws[0].capitalize()] + ws[1:]) + rng.choice([".", ".", "!", "?"])

def document(rng, vocab=WORDS):
    return [sentence(rng, vocab) for _ in range(rng.randint(1, 4))]


@pytest.mark.parametrize("stem", [False, True])
def test_rouge_matches_rouge_score_on_random_ascii(stem):
    from rouge_score.rouge_scorer import RougeScorer
    ref_scorer = RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=stem)
    rng = random.Random(2)
    preds, refs, expected = [], [], []
    for _ in range(200):
        r_docs = [document(rng) for _ in range(rng.randint(1, 3))]          # uneven numbers of references
        p_doc = document(rng) if rng.random() < 0.3 else [perturb(rng, s).capitalize() + "." for s in r_docs[0]]
        p_doc = [s for s in p_doc if len(s) > 1] or ["Nothing."]
        preds.append(" ".join(p_doc)); refs.append([" ".join(d) for d in r_docs])
        # the reference gets the sentences one per line, as rouge-score's rougeLsum expects; ours splits them itself
        s = ref_scorer.score_multi(["\n".join(d) for d in r_docs], "\n".join(p_doc))
        expected.append({k: s[k].fmeasure for k in s})
    got = rouge(preds, refs, per_pair=True, stem=stem)
    for g, e in zip(got, expected):
        for k in e: assert g[k] == pytest.approx(e[k], abs=1e-12), (k, g, e)
    mean = rouge(preds, refs, stem=stem)
    for k in mean: assert mean[k] == pytest.approx(np.mean([e[k] for e in expected]), abs=1e-12)
    assert 0.05 < mean["rouge2"] < mean["rouge1"] < 1


def test_rouge_ngram_and_lcs_match_rouge_score_on_random_printable_ascii():
    from rouge_score.rouge_scorer import RougeScorer
    ref_scorer = RougeScorer(["rouge1", "rouge2", "rougeL"])
    rng = random.Random(3)
    chars = string.ascii_letters + string.digits + string.punctuation + "  \n"
    for _ in range(300):
        a = "".join(rng.choice(chars) for _ in range(rng.randint(0, 80)))
        b = "".join(rng.choice(chars) for _ in range(rng.randint(0, 80)))
        ours, theirs = rouge([a], [b], per_pair=True)[0], ref_scorer.score(b, a)
        for k in theirs: assert ours[k] == pytest.approx(theirs[k].fmeasure, abs=1e-12)
    t, d = UnicodeTokenizer(), __import__("rouge_score.tokenizers", fromlist=["x"]).DefaultTokenizer()
    assert all(t.tokenize(s) == d.tokenize(s) for s in ("".join(rng.choice(chars) for _ in range(60)) for _ in range(300)))


def test_rouge_non_ascii_sanity():
    texts = ["Кошка сидела на ковре.", "Η γάτα κάθεται.", "我喜欢吃苹果。", "हिन्दी एक भाषा है।", "Ça été très éprouvé.", "東京は大きい都市です。"]
    for t in texts:
        assert rouge([t], [t]) == dict(rouge1=1.0, rouge2=1.0, rougeL=1.0, rougeLsum=1.0)
    nfd = [unicodedata.normalize("NFD", t) for t in texts]
    assert rouge(nfd, texts)["rouge1"] == 1.0                                # decomposed accents match composed ones
    assert rouge(["Кошка сидела"], ["Собака спала"])["rouge1"] == 0.0
    assert rouge(["Кошка сидела на полу"], ["Кошка спала на ковре"])["rouge1"] == pytest.approx(0.5)
    assert rouge(["我喜欢猫"], ["我喜欢狗"])["rouge1"] == pytest.approx(0.75)    # one token per Han character
    assert rouge(["Café au lait"], ["cafe au lait"])["rouge1"] == pytest.approx(2 / 3)   # accents are letters, not noise


# ---------------------------------------------------------------- BLEU and chrF against sacrebleu
def corpus(seed, n=300, vocab=WORDS):
    rng = random.Random(seed)
    refs = [[" ".join(document(rng, vocab)) for _ in range(rng.randint(1, 4))] for _ in range(n)]
    preds = [perturb(rng, r[0]) if rng.random() < 0.8 else " ".join(document(rng, vocab)) for r in refs]
    return preds, refs


def test_bleu_chrf_match_sacrebleu_single_reference():
    import sacrebleu
    preds, refs = corpus(4)
    single = [r[0] for r in refs]
    assert bleu(preds, single) == pytest.approx(sacrebleu.corpus_bleu(preds, [single]).score, abs=1e-9)
    assert chrf(preds, single) == pytest.approx(sacrebleu.corpus_chrf(preds, [single]).score, abs=1e-9)
    assert chrf(preds, single, word_order=2) == pytest.approx(sacrebleu.corpus_chrf(preds, [single], word_order=2).score, abs=1e-9)
    sb = bleu(preds, single, per_pair=True)
    assert sb == pytest.approx([sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(preds, single)], abs=1e-9)
    assert chrf(preds, single, per_pair=True) == pytest.approx([sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(preds, single)], abs=1e-9)
    p2, r2 = ["the cat sat on the mat", "a dog"], ["the cat sat on the mat", "the dog barked"]
    assert bleu(p2, r2) == pytest.approx(sacrebleu.corpus_bleu(p2, [r2]).score) and abs(bleu(p2, r2) - np.mean(bleu(p2, r2, per_pair=True))) > 5
    assert bleu(preds, single, lowercase=True) == pytest.approx(sacrebleu.corpus_bleu(preds, [single], lowercase=True).score, abs=1e-9)


def test_bleu_chrf_uneven_reference_counts():
    "Pairs with 1 to 4 references: padding each pair with copies of its own first reference changes nothing in BLEU or chrF."
    import sacrebleu
    preds, refs = corpus(5)
    assert len({len(r) for r in refs}) > 1
    n = max(map(len, refs))
    streams = [[r[j] if j < len(r) else r[0] for r in refs] for j in range(n)]
    assert bleu(preds, refs) == pytest.approx(sacrebleu.corpus_bleu(preds, streams).score, abs=1e-9)
    assert chrf(preds, refs) == pytest.approx(sacrebleu.corpus_chrf(preds, streams).score, abs=1e-9)
    assert bleu(preds, refs, per_pair=True) == pytest.approx([sacrebleu.sentence_bleu(p, r).score for p, r in zip(preds, refs)], abs=1e-9)
    assert chrf(preds, refs, per_pair=True) == pytest.approx([sacrebleu.sentence_chrf(p, r).score for p, r in zip(preds, refs)], abs=1e-9)
    assert bleu(preds, refs) > bleu(preds, [r[0] for r in refs])          # more references, more matches


def test_bleu_non_ascii():
    import sacrebleu
    zh = list("我你他喜欢吃苹果猫狗在家里大小")
    preds, refs = corpus(6, n=50, vocab=zh)
    preds = [p.replace(" ", "") for p in preds]; refs = [[x.replace(" ", "") for x in r] for r in refs]
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(max(map(len, refs)))]
    assert bleu(preds, refs, tokenize="zh") == pytest.approx(sacrebleu.corpus_bleu(preds, streams, tokenize="zh").score, abs=1e-9)
    assert bleu(preds, refs, tokenize="zh") > 5 * max(bleu(preds, refs), 1)   # 13a sees one "word" per sentence
    assert chrf(["Кошка сидит дома"], ["Кошка сидела дома"]) > 50


# ---------------------------------------------------------------- retrieval against pytrec_eval
def test_retrieval_scores_match_pytrec_eval():
    import pytrec_eval
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(30)]
    checked = 0
    for q in range(400):
        k = rng.choice([1, 3, 5, 10])
        ranked = rng.sample(docs, rng.randint(0, 15))
        judged = rng.sample(docs, rng.randint(1, 8))
        grades = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        relevant = grades if q % 2 else [d for d, g in grades.items() if g > 0]
        got = retrieval_scores(ranked, relevant, k=k)
        if not any(g > 0 for g in grades.values()) or (q % 2 == 0 and not relevant):
            assert all(math.isnan(v) for v in got.values()); continue
        qrels = {"q": relevant if isinstance(relevant, dict) else {d: 1 for d in relevant}}
        run = {"q": {d: float(len(ranked) - i) for i, d in enumerate(ranked)}}
        ev = pytrec_eval.RelevanceEvaluator(qrels, {f"recall.{k}", f"P.{k}", f"ndcg_cut.{k}", "recip_rank", f"success.{k}"})
        ref = ev.evaluate(run).get("q")
        if ref is None:                                       # trec_eval skips a query with an empty ranking
            assert got["recall_at_k"] == got["hit"] == got["mrr"] == 0.0; continue
        assert got["recall_at_k"] == pytest.approx(ref[f"recall_{k}"], abs=1e-9)
        assert got["precision_at_k"] == pytest.approx(ref[f"P_{k}"], abs=1e-9)
        assert got["ndcg_at_k"] == pytest.approx(ref[f"ndcg_cut_{k}"], abs=1e-9)
        assert got["mrr"] == pytest.approx(ref["recip_rank"], abs=1e-9)
        assert got["hit"] == ref[f"success_{k}"]
        checked += 1
    assert checked > 250


# ---------------------------------------------------------------- perplexity against the model's own loss
@pytest.fixture(scope="module")
def lm(tiny_model):
    from llmops_nb.models import load_model, load_tokenizer
    return load_model(tiny_model, device="cpu"), load_tokenizer(tiny_model)   # fp32 on CPU: exact comparisons

def direct_nll(model, ids):
    "Summed NLL of ids[1:] from the model's own loss with labels=."
    import torch
    with torch.no_grad():
        t = torch.tensor([ids])
        return model(t, labels=t).loss.item() * (len(ids) - 1)


def test_perplexity_matches_labels_loss_on_random_texts(lm):
    model, tok = lm
    rng = random.Random(8)
    texts = [" ".join(rng.choice(WORDS + ODD) for _ in range(rng.randint(1, 40))) for _ in range(25)]
    res = perplexity(model, texts, tokenizer=tok, batch_size=4)               # batches of uneven lengths: padding must not leak
    nll = tokens = 0
    for t, p, n in zip(texts, res["per_text"], res["per_text_tokens"]):
        ids = [tok.bos_token_id] + tok(t)["input_ids"]
        d = direct_nll(model, ids)
        assert n == len(ids) - 1
        assert p == pytest.approx(math.exp(d / n), rel=1e-4)
        nll += d; tokens += n
    assert res["tokens"] == tokens
    assert res["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-4)
    assert perplexity(model, texts, tokenizer=tok, batch_size=1)["per_text"] == pytest.approx(res["per_text"], rel=1e-4)
    no_bos = perplexity(model, texts[:3], tokenizer=tok, add_start_token=False)
    for t, p in zip(texts[:3], no_bos["per_text"]):
        ids = tok(t)["input_ids"]
        if len(ids) > 1: assert p == pytest.approx(math.exp(direct_nll(model, ids) / (len(ids) - 1)), rel=1e-4)


def test_perplexity_model_forms(tiny_model, lm):
    from llmops_nb.generate import HFGenerator
    model, tok = lm
    texts = ["The warranty covers two years.", "Returns within 30 days."]
    import torch
    want = perplexity(model, texts, tokenizer=tok)["per_text"]
    tol = 0.1 if torch.cuda.is_available() else 1e-4                         # a folder loads in bf16 on a GPU
    assert perplexity(tiny_model, texts)["per_text"] == pytest.approx(want, rel=tol)
    assert perplexity(str(tiny_model), texts)["per_text"] == pytest.approx(want, rel=tol)
    assert perplexity(HFGenerator(tiny_model, device="cpu"), texts)["per_text"] == pytest.approx(want, rel=1e-4)
    assert model.training is False


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_perplexity_on_gpu_matches_cpu(tiny_model, lm):
    from llmops_nb.models import load_model
    model, tok = lm
    texts = [" ".join(random.Random(i).choice(WORDS) for _ in range(5 + 7 * i)) for i in range(6)]
    gpu = load_model(tiny_model, device="cuda", dtype="float32")
    assert perplexity(gpu, texts, tokenizer=tok, batch_size=4)["per_text"] == pytest.approx(
        perplexity(model, texts, tokenizer=tok)["per_text"], rel=1e-3)
    bf16 = perplexity(load_model(tiny_model, device="cuda", dtype="bfloat16"), texts, tokenizer=tok, max_length=16, stride=4)
    assert math.isfinite(bf16["perplexity"]) and bf16["perplexity"] == pytest.approx(perplexity(model, texts, tokenizer=tok, max_length=16, stride=4)["perplexity"], rel=0.1)


def test_perplexity_long_texts(lm):
    import torch
    model, tok = lm
    rng = random.Random(9)
    text = " ".join(rng.choice(WORDS) for _ in range(30))
    ids = [tok.bos_token_id] + tok(text)["input_ids"]
    W, S = 32, 8
    assert len(ids) > 3 * W
    with pytest.warns(UserWarning, match="stride="):
        cut = perplexity(model, [text], tokenizer=tok, max_length=W)
    assert cut["truncated"] == [0] and cut["per_text_tokens"] == [W - 1]
    assert cut["perplexity"] == pytest.approx(math.exp(direct_nll(model, ids[:W]) / (W - 1)), rel=1e-4)
    # sliding windows: token t is scored once, by the first window [b, b + W) holding it, with context ids[b:t]
    ref = 0.0
    for t in range(1, len(ids)):
        b = 0 if t < W else ((t - W) // S + 1) * S
        with torch.no_grad(): logits = model(torch.tensor([ids[b:t]])).logits[0, -1].float()
        ref -= torch.log_softmax(logits, -1)[ids[t]].item()
    slid = perplexity(model, [text, "short one"], tokenizer=tok, max_length=W, stride=S, batch_size=3)
    assert slid["per_text_tokens"][0] == len(ids) - 1 and slid["truncated"] == []
    assert slid["per_text"][0] == pytest.approx(math.exp(ref / (len(ids) - 1)), rel=1e-4)


# ---------------------------------------------------------------- answer relevance, groundedness
class HashEmbedder:
    "Deterministic pseudo-embeddings (not normalized), to check the cosine arithmetic."
    def __init__(self): self.calls = 0
    def encode(self, texts):
        self.calls += 1
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=16) * 3 for t in texts])

def test_answer_relevance_is_cosine():
    rng = random.Random(10)
    qs = [noisy_text(rng, 1) + "?" for _ in range(50)]
    ans = [noisy_text(rng, 1) if i % 7 else "" for i in range(50)]
    emb = HashEmbedder()
    got = answer_relevance(qs, ans, embedder=emb)
    assert emb.calls == 1
    for q, a, g in zip(qs, ans, got):
        if not a.strip(): assert g == 0.0; continue
        u, v = emb.encode([q])[0], emb.encode([a])[0]
        assert g == pytest.approx(u @ v / np.linalg.norm(u) / np.linalg.norm(v), abs=1e-9)


def test_answer_relevance_packaged_embedder():
    q = ["How long is the warranty?", "Как вернуть товар?"]
    good = answer_relevance(q, ["The warranty lasts two years.", "Товар можно вернуть в течение 30 дней."])
    bad = answer_relevance(q, ["The cafeteria serves soup.", "Погода сегодня хорошая."])
    assert all(-1 <= x <= 1 for x in good + bad) and good[0] > bad[0] + 0.2


def test_groundedness_is_check_grounded_fraction():
    from llmops_nb.grounded import check_grounded
    ctx = ["All products carry a two-year warranty.", "Returns are accepted within 30 days of delivery."]
    answers = ["The warranty lasts two years. Returns are accepted within 30 days.", "The warranty lasts five years. Returns take 30 days.",
               "I don't know.", "", "Der Akku hält 10 Stunden."]
    got = groundedness(answers, [ctx] * len(answers), semantic="never")
    assert got == [check_grounded(a, ctx, semantic="never").fraction for a in answers]
    assert got[0] == 1.0 and got[1] == 0.5 and got[3] == 1.0


# ---------------------------------------------------------------- rates, cost, latency
def test_rates_cost_latency_against_direct_computation():
    rng = random.Random(11)
    st = [rng.choice(["answered", "refused", "idk", "blocked", "error"]) for _ in range(500)]
    assert refusal_rate(st) == sum(s in ("refused", "idk") for s in st) / 500
    assert block_rate(st) == st.count("blocked") / 500
    assert refusal_rate([types.SimpleNamespace(status=s) for s in st], which=("refused", "blocked")) == sum(s in ("refused", "blocked") for s in st) / 500
    ms = [rng.lognormvariate(5, 1) for _ in range(1000)]
    lat = latency_summary(ms)
    for q in (50, 90, 95, 99): assert lat[f"p{q}"] == pytest.approx(np.percentile(ms, q))
    assert lat["mean"] == pytest.approx(np.mean(ms)) and lat["max"] == max(ms) and lat["n"] == 1000
    assert cost(1_000_000, 500_000, {"prompt": 0.15, "completion": 0.6}) == pytest.approx(0.45)
    assert cost([10, 20], [5], {"prompt": 1e6, "completion": 0}) == pytest.approx(30)


# ---------------------------------------------------------------- registry and hf: metrics
SPEC = {"exact_match": "binary", "token_f1": "continuous", "rouge1": "continuous", "rouge2": "continuous", "rougeL": "continuous",
        "rougeLsum": "continuous", "bleu": "continuous", "chrf": "continuous", "answer_relevance": "continuous",
        "groundedness": "continuous", "recall_at_k": "continuous", "precision_at_k": "continuous", "ndcg_at_k": "continuous",
        "mrr": "continuous", "hit": "binary", "refused": "binary", "blocked": "binary", "error": "binary",
        "correct_refusal": "binary", "latency_ms": "continuous", "cost_usd": "continuous", "completion_tokens": "continuous"}
LOWER = {"refused", "blocked", "error", "latency_ms", "cost_usd", "completion_tokens"}

def test_metric_registry():
    for name, kind in SPEC.items():
        m = metric_info(name)
        assert isinstance(m, MetricInfo) and m is METRICS[name] and m.name == name and m.kind == kind
        assert m.higher_is_better == (name not in LOWER) and m.scale and m.description
    j = metric_info("judge:faithfulness")
    assert (j.kind, j.higher_is_better, j.scale) == ("continuous", True, "[0, 1]")
    assert metric_info("hf:meteor").higher_is_better and not metric_info("hf:wer").higher_is_better
    with pytest.raises(ValueError, match="known: exact_match"): metric_info("accuracy")
    with pytest.raises(ValueError, match="did you mean 'token_f1'"): metric_info("token-f1")
    with pytest.raises(TypeError): metric_info(None)


def test_load_metric_without_evaluate(monkeypatch):
    monkeypatch.setitem(sys.modules, "evaluate", None)                       # import evaluate -> ImportError
    with pytest.raises(ImportError, match="pip install evaluate"): load_metric("hf:meteor")
    with pytest.raises(ValueError, match="hf:<name>"): load_metric("meteor")
    with pytest.raises(ValueError, match="built in"): load_metric("bleu")


def test_load_metric_through_evaluate(monkeypatch):
    calls = []
    def load(name, **kw):
        calls.append((name, kw))
        if name == "offline": raise ConnectionError("Couldn't reach https://huggingface.co")
        return types.SimpleNamespace(compute=lambda predictions, references, **k: {"n": len(predictions), **k})
    monkeypatch.setitem(sys.modules, "evaluate", types.SimpleNamespace(load=load))
    m = load_metric("hf:org/metric", config_name="x")
    assert m(["a", "b"], ["a", "c"], flag=1) == {"n": 2, "flag": 1} and calls[-1] == ("org/metric", {"config_name": "x"})
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"): load_metric("hf:offline")


# ---------------------------------------------------------------- bad input
PAIRWISE = [rouge, bleu, chrf]

@pytest.mark.parametrize("fn", PAIRWISE)
def test_pairwise_bad_input(fn):
    with pytest.raises(ValueError, match="preds has 3 items, refs has 2"): fn(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"): fn([], [])
    with pytest.raises(TypeError, match=r"preds\[1\]: expected str, got int"): fn(["a", 3], ["a", "b"])
    with pytest.raises(TypeError, match=r"refs\[1\]\[0\]: expected str, got bytes"): fn(["a", "b"], ["a", [b"b"]])
    with pytest.raises(ValueError, match=r"refs\[0\]: an empty list"): fn(["a"], [[]])
    with pytest.raises(TypeError, match="preds: expected a list of strings, got NoneType"): fn(None, ["a"])
    with pytest.raises(TypeError, match="refs: expected a list"): fn(["a"], None)
    with pytest.raises(TypeError, match="single str"): fn("a b", ["a b"])


def test_single_pair_bad_input():
    for fn in (exact_match, token_f1):
        with pytest.raises(TypeError, match="pred: expected str, got NoneType"): fn(None, "a")
        with pytest.raises(TypeError, match="ref: expected a reference string"): fn("a", None)
        with pytest.raises(ValueError, match="empty list of references"): fn("a", [])
        with pytest.raises(TypeError, match=r"ref\[1\]"): fn("a", ["a", 1])
    with pytest.raises(TypeError): normalize_answer(None)


def test_empty_strings_are_valid():
    assert exact_match("", "") == 1.0 and token_f1("", "") == 1.0 and exact_match("", "x") == 0.0 and token_f1("x", "") == 0.0
    assert rouge([""], ["a"]) == dict(rouge1=0.0, rouge2=0.0, rougeL=0.0, rougeLsum=0.0)
    assert bleu(["", "a b c d"], ["x", ""]) == 0.0 and chrf([""], ["abc"]) == 0.0
    assert bleu([""], ["abc"], per_pair=True) == [0.0]
    assert answer_relevance([""], [""], embedder=HashEmbedder()) == [0.0]


def test_other_functions_bad_input(lm):
    model, tok = lm
    with pytest.raises(ValueError, match="questions has 2 items, answers has 1"): answer_relevance(["a", "b"], ["a"], embedder=HashEmbedder())
    with pytest.raises(TypeError, match=r"answers\[0\]"): answer_relevance(["a"], [None], embedder=HashEmbedder())
    with pytest.raises(ValueError, match="empty"): answer_relevance([], [], embedder=HashEmbedder())
    with pytest.raises(ValueError, match="answers has 2 items, contexts has 1"): groundedness(["a", "b"], [["c"]])
    with pytest.raises(TypeError, match=r"contexts\[0\]: expected a list"): groundedness(["a"], ["c"])
    with pytest.raises(TypeError, match="contexts: expected"): groundedness(["a"], None)
    with pytest.raises(TypeError, match=r"retrieved\[1\]"): retrieval_scores(["a", 2.5], ["a"])
    with pytest.raises(TypeError, match="relevant: expected"): retrieval_scores(["a"], None)
    with pytest.raises(TypeError, match="retrieved: expected a list"): retrieval_scores(None, ["a"])
    with pytest.raises(ValueError, match="k must be"): retrieval_scores(["a"], ["a"], k=0)
    with pytest.raises(ValueError, match=r"statuses\[1\] is 'ok'"): refusal_rate(["answered", "ok"])
    with pytest.raises(ValueError, match="empty"): block_rate([])
    with pytest.raises(ValueError, match="price"): cost(1, 1, {"prompt": 1})
    with pytest.raises(ValueError, match=r"price\['prompt'\]"): cost(1, 1, {"prompt": -1, "completion": 1})
    with pytest.raises(TypeError, match="prompt_tokens"): cost("10", 1, {"prompt": 1, "completion": 1})
    with pytest.raises(ValueError, match=r"ms_list\[2\]"): latency_summary([1, 2, -3])
    with pytest.raises(TypeError, match="ms_list"): latency_summary(None)
    with pytest.raises(ValueError, match="empty"): perplexity(model, [], tokenizer=tok)
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str, got NoneType"): perplexity(model, ["a", None], tokenizer=tok)
    with pytest.raises(TypeError, match="single str"): perplexity(model, "a text", tokenizer=tok)
    with pytest.raises(ValueError, match="tokenizer="): perplexity(model, ["a"])
    with pytest.raises(ValueError, match="stride must be"): perplexity(model, ["a"], tokenizer=tok, max_length=16, stride=16)
    with pytest.raises(ValueError, match="batch_size"): perplexity(model, ["a"], tokenizer=tok, batch_size=0)
    from llmops_nb.generate import OpenAICompatGenerator
    from llmops_nb.testing import FakeOpenAIServer
    with pytest.raises(TypeError, match="remote generator"): perplexity(OpenAICompatGenerator("http://127.0.0.1:9", "m"), ["a"])
    res = perplexity(model, ["", "  ", "\udcff\x00 junk"], tokenizer=tok)      # empty, blank, surrogate and NUL
    assert math.isnan(res["per_text"][0]) and math.isfinite(res["per_text"][2])


def test_megabyte_strings_finish_fast(lm):
    model, tok = lm
    rng = random.Random(12)
    big = " ".join(rng.choice(WORDS) + rng.choice([".", "", "", ""]) for _ in range(170_000))[:1_000_000]
    big2 = big[::-1]
    assert len(big) >= 999_000
    t = time.perf_counter()
    assert exact_match(big, big) == 1.0 and 0 <= token_f1(big, big2) <= 1
    with pytest.warns(UserWarning, match=r"max_tokens=1000.*preds\[0\]"):
        r = rouge([big], [big2])
    assert all(0 <= v <= 1 for v in r.values())
    assert 0 <= bleu([big, "a b"], [big2[:1000], big]) <= 100 and 0 <= chrf([big], [big2[:1000]]) <= 100
    assert retrieval_scores([big], [big])["hit"] == 1.0
    with pytest.warns(UserWarning, match="truncated"):
        p = perplexity(model, [big, "short"], tokenizer=tok)
    assert p["truncated"] == [0] and math.isfinite(p["perplexity"])
    assert groundedness([big], [[big2]], semantic="never")[0] <= 1
    assert time.perf_counter() - t < 45
