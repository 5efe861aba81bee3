"sft with method=prompt_tuning / prefix_tuning: validation, pre-flight, resume, card, merge refusal, and generation with the adapter."
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from llmops_nb.core import ConfigError, read_json
from llmops_nb.models import adapter_digest, adapter_method, load_adapter
from llmops_nb.train import PreflightError, SFTConfig, last_checkpoint, merge_adapter, sft, sweep
from llmops_nb.engine import check_vllm_adapter

SYSTEM = {"role": "system", "content": "You are the Kestrel support assistant."}
ROWS = [{"id": f"c{i}", "messages": [SYSTEM, {"role": "user", "content": f"How long is the warranty on product {i}?"},
                                     {"role": "assistant", "content": f"Product {i} has a two year warranty."}]} for i in range(24)]
FAST = dict(max_length=96, learning_rate=3e-2, batch_size=4, logging_steps=2, num_virtual_tokens=6)


def job(model, method="prompt_tuning", **kw) -> SFTConfig:
    return SFTConfig(base_model=model, method=method, **{**FAST, **kw})


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture(scope="module")
def prompt_job(tiny_model, tmp_path_factory):
    "An uninterrupted 6-step prompt-tuning run: the reference for resume and generation."
    out = tmp_path_factory.mktemp("pt") / "job"
    return sft(job(tiny_model, max_steps=6, save_steps=3), ROWS[:20], ROWS[20:], out_dir=out, verbose=False)


@pytest.fixture(scope="module")
def prefix_job(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("pfx") / "job"
    return sft(job(tiny_model, "prefix_tuning", max_steps=2, save_steps=2), ROWS[:20], ROWS[20:], out_dir=out, verbose=False)


@pytest.mark.parametrize("kw, message", [
    (dict(method="p_tuning"), "'lora' | 'prompt_tuning' | 'prefix_tuning'"),
    (dict(num_virtual_tokens=8), "parameter 'num_virtual_tokens' must be left at its default 20 with method='lora'"),
    (dict(prompt_init="random"), "parameter 'prompt_init'"),
    (dict(prompt_init_text="Be brief."), "parameter 'prompt_init_text'"),
    (dict(method="prompt_tuning", lora_r=8), "parameter 'lora_r' must be left at its default 16 with method='prompt_tuning'"),
    (dict(method="prefix_tuning", target_modules=["q_proj"]), "parameter 'target_modules'"),
    (dict(prompt_init="random"), "a setting of prompt_tuning and prefix_tuning only"),
    (dict(method="prompt_tuning", num_virtual_tokens=0), "parameter 'num_virtual_tokens' must be in [1, 512]"),
    (dict(method="prompt_tuning", num_virtual_tokens="many"), "num_virtual_tokens"),
    (dict(method="prompt_tuning", prompt_init_text=""), "parameter 'prompt_init_text'"),
    (dict(method="prompt_tuning", packing=True), "parameter 'packing' must be False with method='prompt_tuning'"),
    (dict(method="prefix_tuning", activation_checkpointing=True), "parameter 'activation_checkpointing'"),
])
def test_method_settings_are_validated(kw, message):
    with pytest.raises(ConfigError, match=None) as e:
        SFTConfig(**kw)
    assert message in str(e.value)


def test_method_is_a_runbook_parameter_and_lora_jobs_keep_their_identity(tiny_model):
    d = SFTConfig().to_dict()
    assert d["method"] == "lora" and d["num_virtual_tokens"] == 20 and d["prompt_init"] == "text"
    from llmops_nb.train import _job_keys
    assert "method" not in _job_keys(SFTConfig()) and "lora_r" in _job_keys(SFTConfig())        # LoRA digests unchanged
    keys = _job_keys(SFTConfig(method="prompt_tuning"))
    assert keys[:4] == ("method", "num_virtual_tokens", "prompt_init", "prompt_init_text") and "lora_r" not in keys


def test_prompt_tuning_trains_few_parameters_and_records_the_method(prompt_job, tiny_model):
    r = prompt_job
    assert adapter_method(r.adapter_dir) == "prompt_tuning"
    assert r.metrics["trainable_params"] == 6 * 128                       # 6 virtual tokens x hidden size, nothing else
    assert r.metrics["steps"] == 6 and r.metrics["eval_loss"] < r.history[0]["loss"]
    info = read_json(r.adapter_dir / "training_info.json")
    assert info["config"]["params"]["method"] == "prompt_tuning" and info["config"]["params"]["num_virtual_tokens"] == 6
    card = (r.adapter_dir / "README.md").read_text()
    assert "tags: [llmops-nb, sft, prompt_tuning]" in card and "# Prompt-tuning adapter" in card
    assert "## Method" in card and "num_virtual_tokens=6" in card and "768 trainable parameters" in card and "unmerged" in card
    assert info["mask_report"]["by_role"]["user"]["trained"] == 0                                  # the same loss mask


def test_preflight_runs_for_prompt_tuning(tiny_model, tmp_path):
    with pytest.raises(PreflightError, match="no token is trainable"):
        sft(job(tiny_model, max_length=24, max_steps=1), ROWS, out_dir=tmp_path / "j", verbose=False)
    assert not (tmp_path / "j" / "adapter").exists()


def test_text_init_starts_from_the_task_description(tiny_model, tmp_path):
    "With prompt_init='random' and 'text' the first loss differs; the text start is reproducible."
    losses = {}
    for init in ("text", "random"):
        r = sft(job(tiny_model, max_steps=1, save_steps=1, logging_steps=1, prompt_init=init), ROWS[:8],
                out_dir=tmp_path / init, verbose=False)
        losses[init] = r.history[0]["loss"]
    assert losses["text"] != losses["random"]


def test_resume_after_a_crash_matches_the_uninterrupted_prompt_tuning_run(prompt_job, tiny_model, tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                raise RuntimeError("simulated crash")

    cfg, out = job(tiny_model, max_steps=6, save_steps=3), tmp_path / "crashy"
    with pytest.raises(RuntimeError, match="simulated crash"):
        sft(cfg, ROWS[:20], ROWS[20:], out_dir=out, callbacks=[Crash()], verbose=False)
    assert last_checkpoint(out / "checkpoints").name == "checkpoint-3"
    resumed = sft(cfg, ROWS[:20], ROWS[20:], out_dir=out, verbose=False)
    a, b = (load_file(Path(r.adapter_dir) / "adapter_model.safetensors") for r in (prompt_job, resumed))
    assert resumed.resumed_from == "checkpoint-3" and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_continue_a_prompt_tuning_adapter_and_refuse_another_method(prompt_job, tiny_model, tmp_path):
    more = sft(job(tiny_model, max_steps=2, save_steps=2, init_adapter=prompt_job.adapter_dir), ROWS[:8],
               out_dir=tmp_path / "more", verbose=False)
    assert adapter_method(more.adapter_dir) == "prompt_tuning"
    a, b = (load_file(Path(r.adapter_dir) / "adapter_model.safetensors") for r in (prompt_job, more))
    moved = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert a.keys() == b.keys() and 0 < moved < 0.1           # it started from the adapter's weights and trained on
    with pytest.raises(ConfigError, match="is a prompt_tuning adapter, not lora; set method='prompt_tuning'"):
        sft(SFTConfig(base_model=tiny_model, init_adapter=prompt_job.adapter_dir, max_steps=1), ROWS[:8],
            out_dir=tmp_path / "lora", verbose=False)
    with pytest.raises(ConfigError, match="has 6 virtual tokens, not 20"):
        sft(SFTConfig(base_model=tiny_model, method="prompt_tuning", init_adapter=prompt_job.adapter_dir, max_steps=1),
            ROWS[:8], out_dir=tmp_path / "n", verbose=False)


def test_merge_and_vllm_refuse_prompt_and_prefix_adapters(prompt_job, prefix_job, tmp_path):
    for r, m in ((prompt_job, "prompt_tuning"), (prefix_job, "prefix_tuning")):
        with pytest.raises(ConfigError, match=f"is a {m} adapter; merging .* applies to LoRA only. Serve it unmerged"):
            merge_adapter(r.adapter_dir, tmp_path / m)
        assert not (tmp_path / m).exists()
        with pytest.raises(ConfigError, match="vLLM serves LoRA adapters only"):
            check_vllm_adapter(r.adapter_dir)


def test_sweep_space_follows_the_method(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="'lora_r' is not a setting of method='prompt_tuning'"):
        sweep(job(tiny_model, max_steps=1), ROWS[:8], ROWS[8:12], out_dir=tmp_path, space={"lora_r": [4, 8]})


def _greedy_full(model, ids: list, n: int) -> list:
    "Greedy decoding by full forward passes (no cache), as training computes the logits."
    x = torch.tensor([ids])
    with torch.inference_mode():
        for _ in range(n):
            x = torch.cat([x, model(input_ids=x, attention_mask=torch.ones_like(x)).logits[:, -1:].argmax(-1)], 1)
    return x[0, len(ids):].tolist()


@pytest.mark.parametrize("which", ["prompt_job", "prefix_job"])
def test_generation_with_the_adapter_uses_the_cache_correctly(which, request, tiny_model):
    "HFGenerator (what serve, evaluate and build_pipeline load) answers as a cache-free forward pass of the adapter does."
    from llmops_nb.generate import HFGenerator
    r = request.getfixturevalue(which)
    g = HFGenerator(str(tiny_model), adapter=r.adapter_dir, device="cpu", chat=True)     # the release path: base + adapter
    own, _ = load_adapter(r.adapter_dir, device="cpu")                                     # load_adapter's path
    q = "How long is the warranty on product 3?"
    ids = g._encode(q)
    want = _greedy_full(own, ids, 8)
    end = next((i + 1 for i, t in enumerate(want) if t in g._eos), len(want))
    assert g.generate(q, max_new_tokens=8).text == g.tokenizer.decode(want[:end], skip_special_tokens=True)
    out = g.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                           max_new_tokens=8, do_sample=False, eos_token_id=None)
    assert out[0, len(ids):].tolist() == want
    assert g.adapter_digest == adapter_digest(r.adapter_dir)


def test_a_release_with_a_prompt_tuning_adapter_is_served(prompt_job, tiny_model, tmp_path):
    from fastapi.testclient import TestClient
    from llmops_nb.pipeline import build_pipeline, release_spec
    from llmops_nb.prompts import PromptRegistry
    from llmops_nb.serve import create_app
    reg = PromptRegistry(tmp_path / "prompts")
    spec = release_spec(str(tiny_model), adapter=prompt_job.adapter_dir, index=None, max_new_tokens=8, k=1, registry=reg)
    pipe = build_pipeline(spec, registry=reg)
    assert pipe.generator.adapter_digest == spec["adapter"]["digest"] == adapter_digest(prompt_job.adapter_dir)
    key = "prompt-tuning-test-key-0123456789"
    c = TestClient(create_app(pipe, keys=[key]))
    r = c.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
               json={"messages": [{"role": "user", "content": "How long is the return window?"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["role"] == "assistant"
