from pathlib import Path
import pytest, torch
from llmops_nb.core import ModelNotAvailable
from llmops_nb.models import (has_generation_markers, load_model, load_tokenizer, make_tiny_model, model_ref, resolve_model,
                              with_generation_markers)

SMOL = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a "
        "helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN_LIKE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_tiny_model_loads_and_generates(tiny_model):
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model, device="cpu")
    n = sum(p.numel() for p in model.parameters())
    assert 1e6 <= n <= 5e6
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert model.llmops_ref == str(tiny_model.resolve())
    enc = tok.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 5


def test_tiny_model_is_deterministic(tmp_path):
    a, b = make_tiny_model(tmp_path / "a", seed=3), make_tiny_model(tmp_path / "b", seed=3)
    c = make_tiny_model(tmp_path / "c", seed=4)
    sa, sb, sc = (load_model(p, device="cpu").state_dict() for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("template", [SMOL, QWEN_LIKE])
def test_generation_markers_render_identically(template):
    from llmops_nb.models import _render
    marked = with_generation_markers(template)
    assert has_generation_markers(marked)
    convs = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
             [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
              {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2 with {{ braces }} and 'quotes'"}]]
    for conv in convs:
        for gen in (False, True):
            assert _render(marked, conv, gen) == _render(template, conv, gen)


def test_assistant_mask_covers_only_assistant_text(tiny_model):
    tok = load_tokenizer(tiny_model)
    conv = [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "It ships today."},
            {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "You are welcome."}]
    enc = tok.apply_chat_template(conv, return_dict=True, return_assistant_tokens_mask=True)
    trained = tok.decode([t for t, m in zip(enc["input_ids"], enc["assistant_masks"]) if m])
    assert trained == "It ships today.<|im_end|>You are welcome.<|im_end|>"


def test_unrewritable_template_is_refused_with_alternatives():
    with pytest.raises(ValueError, match="loss='completion'"):
        with_generation_markers("{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    with pytest.raises(ValueError, match="no chat template"):
        with_generation_markers("")


def test_bad_model_references_fail_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable, match="offline"):
        load_model("no-such-org/no-such-model")
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailable, match="no config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelNotAvailable, match="is a file"):
        resolve_model(tmp_path / "file.bin")
    with pytest.raises(TypeError):
        resolve_model(123)


def test_bad_arguments(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="quantize"):
        load_model(tiny_model, quantize="3bit")
    with pytest.raises(ValueError, match="layers"):
        make_tiny_model(tmp_path / "x", layers=0)
    with pytest.raises(ValueError, match="corpus"):
        make_tiny_model(tmp_path / "x", corpus=[])
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="bitsandbytes"):
            load_model(tiny_model, quantize="4bit")


def test_model_ref_is_portable(tiny_model):
    assert model_ref("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    assert model_ref("smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert model_ref(tiny_model) == str(Path(tiny_model).resolve())
    assert model_ref("org/name") == "org/name"


@pytest.mark.parametrize("kind", ["prompt", "prefix"])
def test_prompt_learning_adapters_generate_with_the_cache_as_without(kind, tiny_model, tmp_path):
    "transformers 5 names the KV cache `cache`; attach_adapter makes PEFT's virtual tokens and prefixes see it."
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model
    from llmops_nb.models import adapter_method, attach_adapter, load_adapter, load_model
    conf = (PromptTuningConfig if kind == "prompt" else PrefixTuningConfig)(task_type="CAUSAL_LM", num_virtual_tokens=4)
    torch.manual_seed(0)
    pm = get_peft_model(load_model(tiny_model, device="cpu"), conf)
    for p in pm.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.5)
    pm.save_pretrained(tmp_path / "ad")
    assert adapter_method(tmp_path / "ad") == f"{kind}_tuning"
    model, tok = load_adapter(tmp_path / "ad", device="cpu")
    ids = tok(["Where is my order?", "How long is the warranty?"], return_tensors="pt", padding=True, padding_side="left")
    with torch.inference_mode():
        cached = model.generate(**ids, max_new_tokens=6, do_sample=False)[:, ids["input_ids"].shape[1]:]
        for row, x in enumerate(tok(["Where is my order?", "How long is the warranty?"])["input_ids"]):
            full = torch.tensor([x])
            for _ in range(6):
                full = torch.cat([full, model(input_ids=full).logits[:, -1:].argmax(-1)], 1)
            assert cached[row].tolist() == full[0, len(x):].tolist()       # batched, left-padded, cached = one by one, no cache
        base = attach_adapter(load_model(tiny_model, device="cpu"), tmp_path / "ad").get_base_model()
        plain = base.generate(input_ids=torch.tensor([x]), max_new_tokens=3, do_sample=False)   # the base alone still generates
    assert plain.shape[1] == len(x) + 3
