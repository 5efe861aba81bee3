"The train_sft runbook through `llmops run`: pre-flight, adapter, merged model, model card, lineage, W&B, resume and bad input."
import json
from pathlib import Path
import pytest
from conftest import llmops_run, run_dir_of, job_env
from llmops_nb.core import read_json
from llmops_nb.data import save_dataset
from llmops_nb.models import make_tiny_model
from llmops_nb.runs import read_run, read_wandb_run

FAST = [("max_steps", "4"), ("batch_size", "4"), ("learning_rate", "0.002"), ("save_steps", "2"), ("max_length", "512"), ("lora_r", "8")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return job_env(home, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny")


def train(env, *params, timeout=600):
    return llmops_run("train_sft", *params, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def first(env, tiny):
    "No prepare_data run in this home: the sample conversations with a held-out split."
    out = train(env, ("base_model", str(tiny)), *FAST)
    assert out.returncode == 0, out.stderr[-3000:]
    return read_run(run_dir_of(out))


def test_run_record_has_adapter_merged_model_card_and_lineage(first, tiny):
    rec = first
    assert rec.status == "completed"
    outs = rec.lineage["outputs"]
    assert {"mask_report", "adapter", "merged_model", "model_card", "loss_plot"} <= set(outs)
    ins = rec.lineage["inputs"]
    assert ins["train"]["digest"] and ins["eval"]["digest"] and f"base_model:{Path(tiny).resolve()}" in ins
    info = read_json(rec.dir / "sft" / "adapter" / "training_info.json")
    assert info["config"]["train_digest"] == ins["train"]["digest"] and info["run_id"] == rec.id
    card = (rec.dir / outs["model_card"]["path"]).read_text()
    assert ins["train"]["digest"] in card and rec.id in card and "Merge check" in card
    m = rec.metrics
    assert m["steps"] == 4 and m["eval_loss"] > 0 and m["merge/max_abs_diff"] < 1e-3 and m["preflight/trained_share"] > 0.1
    assert 0 < m["train/mean_token_accuracy"] <= 1                  # a metric whose name contains "token" is not redacted
    rep = read_json(rec.dir / "mask_report.json")
    assert rep["by_role"]["user"]["trained"] == 0 and rep["by_role"]["assistant"]["trained"] == rep["trained_tokens"]
    nb = json.loads((rec.dir / "notebook.ipynb").read_text())
    assert any("<mark>" in json.dumps(c.get("outputs", [])) for c in nb["cells"])    # the pre-flight example is shown
    wb = read_wandb_run(rec.dir)
    assert wb["state"] == "finished" and wb["summary"]["eval_loss"] == pytest.approx(m["eval_loss"])
    assert (rec.dir / "merged" / "model.safetensors").is_file()


def test_dataset_folder_and_resume_from_an_earlier_run(env, tiny, first, tmp_path):
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Is product {i} in stock?"},
                                         {"role": "assistant", "content": f"Yes, product {i} ships today."}]} for i in range(30)]
    ds = save_dataset(rows, tmp_path / "sft_ds")
    out = train(env, ("base_model", str(tiny)), ("dataset", str(ds.path)), ("merge", "false"), *FAST)
    assert out.returncode == 0, out.stderr[-3000:]
    rec = read_run(run_dir_of(out))
    ins = rec.lineage["inputs"]
    assert ins["sft_source"]["path"] == str(ds.path) and ins["sft_source"]["digest"]   # split here into train and eval
    assert read_json(rec.dir / "sft" / "adapter" / "training_info.json")["config"]["train_digest"] == ins["train"]["digest"]   # card and lineage agree
    assert "merged_model" not in rec.lineage["outputs"]
    again = train(env, ("base_model", str(tiny)), ("dataset", str(ds.path)), ("merge", "false"), ("resume_from", rec.id), *FAST)
    assert again.returncode == 0, again.stderr[-3000:]
    rec2 = read_run(run_dir_of(again))
    assert rec2.lineage["outputs"]["adapter"]["digest"] == rec.lineage["outputs"]["adapter"]["digest"]   # finished job: reused


def test_bad_input_fails_fast_with_clear_errors(env, tiny, tmp_path):
    out = train(env, ("loss", "prompt"))
    assert out.returncode == 2 and "'assistant' | 'completion' | 'all'" in out.stderr
    out = train(env, ("base_model", str(tiny)), ("lora_r", "0"))        # a range the config checks: exit 2, naming the parameter
    assert out.returncode == 2 and "parameter 'lora_r' must be >= 1, got 0" in out.stderr
    out = train(env, ("base_model", str(tiny)), ("init_adapter", str(tmp_path)))
    assert out.returncode == 2 and "parameter 'init_adapter'" in out.stderr and "not an adapter folder" in out.stderr
    out = train(env, ("base_model", str(tmp_path / "no-model")))
    assert out.returncode == 1 and "does not exist" in out.stderr
    out = train(env, ("base_model", str(tiny)), ("dataset", str(tmp_path / "missing.jsonl")))
    assert out.returncode == 1 and "not a dataset folder" in out.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n{"messages": [{"role": "user", "content": "x"}]}\n')
    out = train(env, ("base_model", str(tiny)), ("dataset", str(bad)))
    assert out.returncode == 1 and "bad.jsonl:2" in out.stderr
    out = train(env, ("base_model", str(tiny)), ("max_length", "24"), *FAST[:4])
    assert out.returncode == 1 and "no token is trainable" in out.stderr
    out = train(env, ("base_model", str(tiny)), ("max_length", "170"), *FAST[:4])      # cuts into most answers of the sample
    assert out.returncode == 1 and "would be dropped because nothing trainable is left within max_length=170" in out.stderr


def test_prompt_tuning_run_writes_an_unmerged_adapter(env, tiny):
    "method=prompt_tuning: the same pre-flight, adapter and card; merge is skipped (LoRA only)."
    fast = [p for p in FAST if p[0] not in ("lora_r", "learning_rate")] + [("learning_rate", "0.03")]
    out = train(env, ("base_model", str(tiny)), ("method", "prompt_tuning"), ("num_virtual_tokens", "8"), *fast)
    assert out.returncode == 0, out.stderr[-3000:]
    rec = read_run(run_dir_of(out))
    assert rec.status == "completed" and rec.params["method"] == "prompt_tuning" and rec.params["num_virtual_tokens"] == 8
    outs = rec.lineage["outputs"]
    assert {"mask_report", "adapter", "model_card", "loss_plot"} <= set(outs) and "merged_model" not in outs
    assert read_json(rec.dir / "sft" / "adapter" / "adapter_config.json")["peft_type"] == "PROMPT_TUNING"
    card = (rec.dir / outs["model_card"]["path"]).read_text()
    assert "# Prompt-tuning adapter" in card and "num_virtual_tokens=8" in card and "served unmerged" in card.lower()
    assert rec.metrics["trainable_params"] == 8 * 128 and rec.metrics["steps"] == 4 and rec.metrics["eval_loss"] > 0
    nb = json.loads((rec.dir / "notebook.ipynb").read_text())
    assert "merge skipped: a prompt_tuning adapter" in json.dumps(nb)
