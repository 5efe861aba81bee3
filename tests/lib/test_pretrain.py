"Pre-training from scratch through the installed package: tokenizer, corpus streaming, blocks, LR range test, resume after a crash, and the model fine-tuned and served."
import random
import pytest
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from llmops_nb.core import ConfigError, digest, read_json
from llmops_nb.data import DataError, save_dataset
from llmops_nb.models import has_generation_markers
from llmops_nb.pretrain import (PretrainConfig, PretrainResult, TokenBlocks, count_params, is_validation, lr_find, model_config,
                                open_corpus, pretrain, train_tokenizer)
from llmops_nb.train import encode

_R = random.Random(0)
WORDS = ["".join(_R.choice(["ka", "te", "lo", "bre", "und", "ri", "sto", "mex", "par", "qu", "ing", "ol"]) for _ in range(_R.randint(1, 4))) for _ in range(300)]
DOCS = [" ".join(_R.choice(WORDS) for _ in range(60 + i % 17)) + f". Document {i} ends here." for i in range(60)]
TINY = dict(vocab_size=400, n_layer=2, d_model=64, n_head=2, block_size=32, max_steps=16, batch_size=8, eval_steps=8,
            save_steps=4, lr=3e-3, logging_steps=4, max_eval_blocks=8, device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    "A folder of documents: markdown and text files."
    d = tmp_path_factory.mktemp("docs")
    for i, t in enumerate(DOCS):
        (d / f"doc{i:02d}.{'md' if i % 2 else 'txt'}").write_text(t + "\n")
    return d


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return train_tokenizer(DOCS, tmp_path_factory.mktemp("tok") / "tok", vocab_size=400)


@pytest.fixture(scope="module")
def tok(tok_dir):
    return AutoTokenizer.from_pretrained(str(tok_dir))


def test_tokenizer_is_deterministic_and_ready_for_sft(tok_dir, tok, tmp_path):
    again = train_tokenizer(DOCS, tmp_path / "again", vocab_size=400)
    assert digest(again) == digest(tok_dir) and digest(tok_dir / "tokenizer.json") == digest(again / "tokenizer.json")
    other = train_tokenizer(DOCS[:30], tmp_path / "other", vocab_size=400)
    assert digest(other / "tokenizer.json") != digest(tok_dir / "tokenizer.json")
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|endoftext|>", "<|im_start|>")
    assert len(tok) == 400 and has_generation_markers(tok.chat_template)
    text = "Ünïcode 🙂 and a kettle\n\ttabs"                        # byte-level: any text round-trips
    assert tok.decode(tok(text)["input_ids"]) == text
    conv = [{"role": "user", "content": "Is my kettle under warranty?"}, {"role": "assistant", "content": "Yes, for two years."}]
    e = encode(tok, conv, loss="assistant")                            # what train_sft's assistant-only loss needs
    trained = tok.decode([t for t in e["labels"] if t != -100])
    assert trained == "Yes, for two years.<|im_end|>"
    assert read_json(tok_dir / "corpus.json")["documents"] == len(DOCS)


def test_tokenizer_bad_input(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(DOCS, tmp_path / "t", vocab_size=100)
    with pytest.raises(DataError, match="empty"):
        train_tokenizer([], tmp_path / "t")
    with pytest.raises(TypeError, match="item 1"):
        train_tokenizer(["ok", 3], tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_corpus_from_files_chunks_and_bad_references(folder, tmp_path):
    files = open_corpus(folder)
    assert files.kind == "files" and len(list(files.documents())) == len(DOCS)
    assert open_corpus(folder).digest == files.digest and open_corpus(folder / "doc03.md").kind == "files"
    doc = "Returns. " * 30 + "Warranty. " * 30
    rows = [{"id": f"d::c{i}", "doc_id": "d", "text": doc[s:e], "start": s, "end": e} for i, (s, e) in enumerate([(0, 200), (150, 400), (350, len(doc))])]
    rows.append({"id": "e::c0", "doc_id": "e", "text": "Another document.", "start": 0, "end": 17})
    ds = save_dataset(rows, tmp_path / "chunks")
    chunks = open_corpus(str(ds.path))
    assert chunks.kind == "chunks" and chunks.digest == ds.digest
    assert list(chunks.documents()) == [("d", doc), ("e", "Another document.")]   # overlapping chunks joined back
    with pytest.raises(FileNotFoundError, match="no-such"):
        open_corpus(tmp_path / "no-such")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no supported text files"):
        open_corpus(tmp_path / "empty")
    with pytest.raises(TypeError, match="int"):
        open_corpus(123)
    (tmp_path / "pdf").mkdir()
    (tmp_path / "pdf" / "broken.pdf").write_bytes(b"%PDF-1.4 not a pdf at all")
    with pytest.raises(DataError, match="broken.pdf"):                  # malformed: the error names the file
        list(open_corpus(tmp_path / "pdf").documents())
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "huge.txt").write_bytes(b"a" * 20_000_001)
    with pytest.raises(DataError, match="huge.txt"):                    # over load_file's 20 MB limit per document
        list(open_corpus(tmp_path / "big").documents())
    bad = save_dataset([{"id": "x", "body": "no text column"}], tmp_path / "bad")
    with pytest.raises(DataError, match="no 'text' column"):
        list(open_corpus(bad.path).documents())


def test_blocks_pack_documents_with_eos_and_a_stable_split(tok):
    val = [d for i, d in enumerate(DOCS) if is_validation(f"text-{i}", 0.2)]
    assert 0 < len(val) < len(DOCS) // 2
    blocks = [b["input_ids"].tolist() for b in TokenBlocks(DOCS, tok, 32, "validation", 0.2)]
    stream = sum((tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for d in val), [])
    assert all(len(b) == 32 for b in blocks) and sum(blocks, []) == stream[: len(blocks) * 32]
    assert TokenBlocks(DOCS, tok, 32, "validation", 0.2).stats() == {"documents": len(val), "tokens": len(stream), "blocks": len(stream) // 32}
    train = [b["input_ids"].tolist() for b in TokenBlocks(DOCS, tok, 32, "train", 0.2)]
    assert not {tuple(b) for b in train} & {tuple(b) for b in blocks}
    first = lambda seed: [b["input_ids"].tolist() for _, b in zip(range(40), TokenBlocks(DOCS, tok, 32, "train", 0.2, repeat=True, shuffle_buffer=8, seed=seed))]
    assert first(1) == first(1) and first(1) != first(2) and len(first(1)) == 40         # repeats past one pass; seeded shuffle
    with pytest.raises(DataError, match="fewer than block_size=4096"):
        next(iter(TokenBlocks(DOCS, tok, 4096, "validation", 0.2)))
    with pytest.raises(ValueError, match="block_size"):
        TokenBlocks(DOCS, tok, 1)
    with pytest.raises(ConfigError, match="block_size"):
        TokenBlocks(DOCS, tok, "big")


def test_model_config_sized_by_parameters(tok):
    cfg = model_config()                                                  # the default: about 5M parameters
    assert 4.5e6 < count_params(cfg) < 5.5e6 and count_params(cfg, embeddings=False) < count_params(cfg)
    small = model_config(n_layer=2, d_model=64, n_head=2, tokenizer=tok)
    assert small.vocab_size == len(tok) and small.eos_token_id == tok.eos_token_id and small.pad_token_id == tok.pad_token_id
    assert count_params(small) == sum(p.numel() for p in AutoModelForCausalLM.from_config(small).parameters())
    with pytest.raises(ValueError, match="even"):
        model_config(d_model=64, n_head=3)
    with pytest.raises(ValueError, match="n_layer"):
        model_config(n_layer=0)


def test_lr_find_suggests_a_rate_below_the_divergence(tok):
    cfg = model_config(n_layer=2, d_model=64, n_head=2, tokenizer=tok)
    found = lr_find(cfg, TokenBlocks(DOCS, tok, 32, "train", 0.2, repeat=True), batch_size=4, steps=40, end_lr=10.0)
    best = found.lrs[found.smoothed.index(min(found.smoothed))]
    assert 1e-5 <= found.suggestion == pytest.approx(best / 10) and found.steepest <= best
    assert len(found.lrs) < 40 and found.smoothed[-1] > min(found.smoothed)          # stopped once the loss diverged
    with pytest.raises(DataError, match="needs more data"):
        lr_find(cfg, [], steps=10)


def test_config_checks_name_the_parameter():
    for kw, name in [({"block_size": 2048}, "block_size"), ({"lr": "fast"}, "lr"), ({"n_head": 3}, "n_head"),
                     ({"val_frac": 0}, "val_frac"), ({"vocab_size": 200}, "vocab_size"), ({"tokenizer": "/no/such"}, "tokenizer")]:
        with pytest.raises(ConfigError, match=f"parameter '{name}'"):
            PretrainConfig(**kw)
    assert PretrainConfig(lr="0.001").lr == 0.001 and PretrainConfig().lr == "auto"


class Killed(Exception):
    pass


class Crash(TrainerCallback):
    "Dies at a step, as a killed process would: no model saved, checkpoints left behind."
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 10:
            raise Killed("step 10")


def test_resume_after_a_crash_reaches_the_same_weights(folder, tmp_path):
    full = pretrain({**TINY, "dataset": str(folder)}, tmp_path / "full", verbose=False)
    m = full.metrics
    assert m["steps"] == 16 and m["eval_loss"] < m["eval_loss_start"] and m["train_loss"] < m["train_loss_start"]
    assert m["eval_perplexity"] == pytest.approx(2.718281828 ** m["eval_loss"])
    assert m["params"] == count_params(AutoModelForCausalLM.from_pretrained(str(full.model_dir)))
    with pytest.raises(Killed):
        pretrain({**TINY, "dataset": str(folder)}, tmp_path / "cut", callbacks=(Crash(),), verbose=False)
    assert not (tmp_path / "cut" / "model").exists() and (tmp_path / "cut" / "checkpoints" / "checkpoint-8").is_dir()
    again = pretrain({**TINY, "dataset": str(folder)}, tmp_path / "cut", verbose=False)
    assert again.resumed_from == "checkpoint-8" and again.metrics["eval_loss"] == m["eval_loss"]
    a, b = load_file(full.model_dir / "model.safetensors"), load_file(again.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    card = read_json(full.model_dir / "model_card.json")
    assert card["corpus_digest"] == open_corpus(folder).digest and card["tokenizer_digest"] == digest(full.out_dir / "tokenizer" / "tokenizer.json")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= {p.name for p in full.model_dir.iterdir()}
    assert PretrainResult.load(tmp_path / "full").metrics == m                       # finished: nothing trained again
    with pytest.raises(ConfigError, match="differs in: params"):
        pretrain({**TINY, "dataset": str(folder), "max_steps": 20}, tmp_path / "full", verbose=False)


def test_pretrained_model_is_fine_tuned_and_served(folder, tmp_path, home):
    from fastapi.testclient import TestClient
    from llmops_nb.retrieval import VectorStore
    from llmops_nb.serve import create_app, default_pipeline
    from llmops_nb.train import SFTConfig, sft
    base = pretrain({**TINY, "dataset": str(folder), "lr": "auto", "max_steps": 8, "lr_find_steps": 10}, tmp_path / "pre", verbose=False)
    assert base.lr_find is not None and base.metrics["lr"] == base.lr_find.suggestion
    rows = [{"messages": [{"role": "user", "content": f"Is order {i} delivered?"}, {"role": "assistant", "content": f"Order {i} was delivered."}]} for i in range(12)]
    res = sft(SFTConfig(base_model=str(base.model_dir), max_steps=3, batch_size=4, max_length=256, lora_r=4, lora_alpha=8, learning_rate=2e-3,
                        save_steps=3, device="cpu"), rows, out_dir=tmp_path / "sft", verbose=False)
    assert res.metrics["steps"] == 3 and read_json(res.adapter_dir / "adapter_config.json")["base_model_name_or_path"] == str(base.model_dir.resolve())
    kb = VectorStore()
    kb.add(["orders#0"], ["Orders are delivered within two working days."], [{"title": "Orders"}])
    kb.save(home / "index")
    rag = default_pipeline(model=str(base.model_dir), index=str(home / "index"), adapter=str(res.adapter_dir), k=1, max_new_tokens=8)
    r = TestClient(create_app(rag, allow_anonymous=True)).post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Is my order delivered?"}]})
    assert r.status_code == 200 and isinstance(r.json()["choices"][0]["message"]["content"], str)
    assert r.json()["llmops"]["status"] in ("answered", "idk", "blocked")
