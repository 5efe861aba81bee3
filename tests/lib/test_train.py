import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from conftest import ROOT
from llmops_nb.core import ConfigError, ModelNotAvailable, read_json
from llmops_nb.data import DataError, save_dataset
from llmops_nb.models import load_adapter, load_tokenizer
from llmops_nb.train import (MergeCheckFailed, PreflightError, SFTConfig, SFTResult, last_checkpoint, mask_report, merge_adapter, sft,
                             sweep)

SYSTEM = {"role": "system", "content": "You are the Kestrel support assistant."}
ROWS = [{"id": f"c{i}", "messages": [SYSTEM, {"role": "user", "content": f"How long is the warranty on product {i}?"},
                                     {"role": "assistant", "content": f"Product {i} has a two year warranty."}]} for i in range(24)]
FAST = dict(max_length=96, learning_rate=2e-3, batch_size=4, lora_r=8, lora_alpha=16, logging_steps=2)


def job(model, **kw) -> SFTConfig:
    "The tests' job settings: FAST, with `kw` on top."
    return SFTConfig(base_model=model, **{**FAST, **kw})


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def adapter_weights(d: Path) -> dict:
    return load_file(Path(d) / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def reference_job(tiny_model, tmp_path_factory):
    "An uninterrupted 8-step run: the reference for resume and merge tests."
    out = tmp_path_factory.mktemp("ref") / "job"
    return sft(job(tiny_model, max_steps=8, save_steps=3, eval_steps=4), ROWS[:20], ROWS[20:], out_dir=out, verbose=False)


def test_sft_trains_and_writes_a_complete_job_folder(reference_job, tiny_model):
    r = reference_job
    assert r.metrics["steps"] == 8 and r.metrics["eval_loss"] < r.history[0]["loss"]      # it learned something
    for f in ("adapter_model.safetensors", "adapter_config.json", "training_info.json", "README.md", "tokenizer_config.json"):
        assert (r.adapter_dir / f).is_file(), f
    info = read_json(r.adapter_dir / "training_info.json")
    assert info["config"]["train_digest"] and info["mask_report"]["trained_tokens"] > 0
    assert read_json(r.adapter_dir / "adapter_config.json")["base_model_name_or_path"] == str(Path(tiny_model).resolve())
    assert SFTResult.load(r.out_dir).metrics == r.metrics
    assert any("eval_loss" in h for h in r.history)


def test_sft_is_deterministic_on_cpu(reference_job, tiny_model, tmp_path):
    again = sft(job(tiny_model, max_steps=8, save_steps=3, eval_steps=4), ROWS[:20], ROWS[20:], out_dir=tmp_path / "again", verbose=False)
    a, b = adapter_weights(reference_job.adapter_dir), adapter_weights(again.adapter_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


KILL_SCRIPT = r"""
import sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
from transformers import TrainerCallback
from llmops_nb.train import SFTConfig, sft
rows = __ROWS__
class SlowAfter(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step >= 7 and __SLOW__: Path(sys.argv[2]).write_text("ready"); time.sleep(600)
sft(SFTConfig(base_model=sys.argv[1], max_steps=8, save_steps=3, eval_steps=4, **__FAST__), rows[:20], rows[20:], out_dir=sys.argv[3], callbacks=[SlowAfter()], verbose=False)
"""


def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(reference_job, tiny_model, tmp_path):
    out, flag = tmp_path / "job", tmp_path / "flag"
    def script(slow):
        return KILL_SCRIPT.replace("__ROWS__", repr(ROWS)).replace("__FAST__", repr(FAST)).replace("__SLOW__", str(slow))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    p = subprocess.Popen([sys.executable, "-c", script(True), str(tiny_model), str(flag), str(out)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not flag.exists():
        assert p.poll() is None, p.stderr.read()
        assert time.time() - t0 < 300, "training never reached step 7"
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (out / "adapter").exists()
    assert last_checkpoint(out / "checkpoints").name == "checkpoint-6"
    # a checkpoint half-written when the process died must be ignored, not resumed from
    (out / "checkpoints" / "checkpoint-7").mkdir(); (out / "checkpoints" / "checkpoint-7" / "optimizer.pt").write_bytes(b"partial")
    r = subprocess.run([sys.executable, "-c", script(False), str(tiny_model), str(flag), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = SFTResult.load(out)
    assert res.resumed_from == "checkpoint-6"
    a, b = adapter_weights(reference_job.adapter_dir), adapter_weights(res.adapter_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert abs(res.metrics["eval_loss"] - reference_job.metrics["eval_loss"]) < 1e-6


def test_changed_settings_in_an_existing_job_folder_are_refused(reference_job, tiny_model):
    with pytest.raises(ConfigError, match="other settings.*learning_rate"):
        sft(job(tiny_model, max_steps=8, save_steps=3, eval_steps=4, learning_rate=1e-3), ROWS[:20], ROWS[20:], out_dir=reference_job.out_dir, verbose=False)


def test_finished_job_is_returned_not_retrained(reference_job, tiny_model):
    before = (reference_job.adapter_dir / "adapter_model.safetensors").stat().st_mtime_ns
    r = sft(job(tiny_model, max_steps=8, save_steps=3, eval_steps=4), ROWS[:20], ROWS[20:], out_dir=reference_job.out_dir, verbose=False)
    assert r.metrics == reference_job.metrics
    assert (reference_job.adapter_dir / "adapter_model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize("bad, message", [
    ([{"messages": [{"role": "user", "content": "hi"}]}], "end with an assistant"),
    ([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}], "empty assistant"),
    ([{"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}], "role 'robot'"),
    ([{"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}], "expected 'user'"),
    ([{"text": "no messages"}], "'messages' must be a non-empty list"),
    (["a string row"], "expected an object"),
    ([], "no conversations"),
])
def test_bad_conversations_fail_before_training(tiny_model, tmp_path, bad, message):
    with pytest.raises(DataError, match=message):
        sft(job(tiny_model), bad, out_dir=tmp_path / "job", verbose=False)
    assert not (tmp_path / "job").exists()


def test_bad_jsonl_names_file_and_line(tiny_model, tmp_path):
    f = tmp_path / "sft.jsonl"
    f.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    with pytest.raises(DataError, match=r"sft.jsonl:2"):
        sft(job(tiny_model), f, out_dir=tmp_path / "job", verbose=False)


def test_nothing_trainable_or_too_much_dropped_is_refused(tiny_model, tmp_path):
    long = [{"id": f"l{i}", "messages": [{"role": "user", "content": "Tell me everything please. " * 40},
                                         {"role": "assistant", "content": "Everything."}]} for i in range(6)]
    with pytest.raises(PreflightError, match="no token is trainable"):
        sft(job(tiny_model), long, out_dir=tmp_path / "a", verbose=False)
    with pytest.raises(PreflightError, match=r"6 of 26 examples \(23%\) would be dropped"):
        sft(job(tiny_model), ROWS[:20] + long, out_dir=tmp_path / "b", verbose=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_mask_report_counts_roles_and_marks_the_example(tiny_model):
    tok = load_tokenizer(tiny_model)
    rep = mask_report(ROWS, tok, max_length=96)
    assert rep.by_role["system"]["trained"] == rep.by_role["user"]["trained"] == 0
    assert rep.by_role["assistant"]["trained"] == rep.trained_tokens == 24 * len(tok(" has a two year warranty.")["input_ids"]) + sum(
        len(tok(f"Product {i}")["input_ids"]) + 1 for i in range(24))
    assert "⟦Product 0 has a two year warranty.<|im_end|>⟧" in rep.example
    assert "<mark>" in rep._repr_html_()
    comp = mask_report(ROWS, tok, max_length=96, loss="completion")
    assert comp.trained_tokens == rep.trained_tokens + 24          # the template's newline after <|im_end|> as well


def test_bad_parameters(tiny_model, tmp_path):
    "A wrong setting fails when the config is built, naming the parameter; bad data and models fail before training."
    for kw, msg in [(dict(learning_rate=0), "parameter 'learning_rate' must be in \\(0, 1\\)"), (dict(lora_r=0), "parameter 'lora_r' must be >= 1"),
                    (dict(loss="prompt"), "parameter 'loss': expected"), (dict(max_steps=0), "parameter 'max_steps'"),
                    (dict(lora_dropout=1.5), "parameter 'lora_dropout'"), (dict(max_length="long"), "parameter 'max_length': expected int"),
                    (dict(early_stopping_patience=2), "parameter 'early_stopping_patience'"), (dict(scheduler="steep"), "parameter 'scheduler'")]:
        with pytest.raises(ConfigError, match=msg):
            job(tiny_model, **kw)
    with pytest.raises(TypeError, match="lr"):
        SFTConfig(lr=1e-3)
    with pytest.raises(ValueError, match="early_stopping_patience needs eval data"):
        sft(job(tiny_model, early_stopping_patience=2, eval_steps=2, save_steps=2), ROWS, out_dir=tmp_path / "e")
    with pytest.raises(ConfigError, match="'init_adapter'.*not an adapter folder"):
        sft(job(tiny_model, init_adapter=str(tmp_path)), ROWS, out_dir=tmp_path / "i")
    with pytest.raises(ModelNotAvailable):
        sft(job("no-such-org/no-such-model"), ROWS, out_dir=tmp_path / "y")
    with pytest.raises(TypeError, match="got int"):
        sft(job(tiny_model), 5, out_dir=tmp_path / "z")
    assert not any((tmp_path / d).exists() for d in "eiyz")


def test_config_records_exactly_the_runbook_parameters():
    "to_dict: every runbook parameter, and a library-only setting only when changed; the job folder's params are unchanged."
    import dataclasses
    names = [f.name for f in dataclasses.fields(SFTConfig)]
    d = SFTConfig().to_dict()
    assert list(d) == names[:names.index("init_adapter") + 1]
    assert SFTConfig(warmup=0.1).to_dict()["warmup"] == 0.1 and SFTConfig(**d) == SFTConfig()


def test_merge_matches_adapter_and_writes_card(reference_job, tmp_path):
    check = merge_adapter(reference_job.adapter_dir, tmp_path / "merged")
    assert check["passed"] and check["max_abs_diff"] < 1e-4
    card = (tmp_path / "merged" / "README.md").read_text()
    assert reference_job.info["config"]["train_digest"] in card and "Merge check" in card
    assert (tmp_path / "merged" / "model.safetensors").is_file()


def test_merge_check_blocks_a_wrong_merge(reference_job, tmp_path, monkeypatch):
    from peft.tuners.tuners_utils import BaseTuner
    monkeypatch.setattr(BaseTuner, "merge_and_unload", lambda self, *a, **k: self.unload())   # drops the adapter instead of merging
    with pytest.raises(MergeCheckFailed, match="nothing written"):
        merge_adapter(reference_job.adapter_dir, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_load_adapter_generates(reference_job):
    model, tok = load_adapter(reference_job.adapter_dir, device="cpu")
    enc = tok.apply_chat_template([{"role": "user", "content": "warranty?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert model.generate(**enc, max_new_tokens=4, do_sample=False).shape[1] == enc["input_ids"].shape[1] + 4


def test_sweep_finds_best_and_resumes(tiny_model, tmp_path):
    space = {"learning_rate": {"low": 1e-4, "high": 5e-3, "log": True}, "lora_r": [4, 8]}
    fixed = SFTConfig(base_model=tiny_model, max_length=96, max_steps=3, batch_size=4, save_steps=3)
    s = sweep(fixed, ROWS[:20], ROWS[20:], out_dir=tmp_path / "sw", n_trials=2, space=space)
    assert len(s.table) == 2 and s.best_value == s.table["eval_loss"].min()
    assert (s.best_dir / "adapter").is_dir()
    s2 = sweep(fixed, ROWS[:20], ROWS[20:], out_dir=tmp_path / "sw", n_trials=3, space=space)
    assert len(s2.table) == 3 and set(s.table["trial"]) < set(s2.table["trial"])
    with pytest.raises(TypeError, match="SFTConfig"):
        sweep(object(), ROWS, ROWS)
    with pytest.raises(ValueError, match="eval data"):
        sweep(fixed, ROWS, None)


def test_packing_trains(tiny_model, tmp_path):
    r = sft(job(tiny_model, packing=True, max_steps=2, save_steps=2), ROWS[:20], out_dir=tmp_path / "p", verbose=False)
    assert r.metrics["steps"] == 2 and r.metrics["train_loss"] > 0


def test_dataset_folder_input_records_its_digest(tiny_model, tmp_path):
    ds = save_dataset(ROWS[:20], tmp_path / "ds")
    r = sft(job(tiny_model, max_steps=1, save_steps=1), tmp_path / "ds", out_dir=tmp_path / "j", verbose=False)
    assert r.info["config"]["train_digest"] == ds.digest


def test_two_process_accelerate_launch_trains_one_adapter(tiny_model, tmp_path):
    "The distributed path: `accelerate launch` with the repository's DDP config starts 2 CPU ranks running the same sft code."
    from llmops_nb.train import launch_command, launch_env
    cfg = ROOT / "configs" / "accelerate" / "cpu_ddp.yaml"
    res = sft(job(tiny_model, processes=2, accelerate_config=str(cfg), max_steps=3, save_steps=3), ROWS[:20], ROWS[20:],
              out_dir=tmp_path / "dist", verbose=False)
    assert res.metrics["world_size"] == 2 and res.metrics["steps"] == 3
    ck = tmp_path / "dist" / "checkpoints" / "checkpoint-3"
    assert (ck / "rng_state_0.pth").is_file() and (ck / "rng_state_1.pth").is_file()
    assert (res.adapter_dir / "adapter_model.safetensors").is_file()
    assert read_json(tmp_path / "dist" / "spec.json")["params"]["max_steps"] == 3
    cmd = launch_command(tmp_path / "dist" / "spec.json", 2, cfg)
    assert cmd[-3:] == ["-m", "llmops_nb.train", str(tmp_path / "dist" / "spec.json")]
    assert launch_command("s.json", 2, module="llmops_nb.pretrain")[-3:] == ["-m", "llmops_nb.pretrain", "s.json"]
    with pytest.raises(ValueError, match="module must be a dotted module name"):
        launch_command("s.json", 2, module="x; rm -rf /")
    if not torch.cuda.is_available(): assert launch_env()["ACCELERATE_USE_CPU"] == "1"


def test_early_stopping_stops_and_keeps_the_best_adapter(tiny_model, tmp_path):
    "A learning rate far too high: eval loss turns up, training stops before max_steps, the best checkpoint is the result."
    r = sft(job(tiny_model, max_steps=30, eval_steps=2, save_steps=2, early_stopping_patience=2, learning_rate=0.5),
            ROWS[:20], ROWS[20:], out_dir=tmp_path / "es", verbose=False)
    evals = [h["eval_loss"] for h in r.history if "eval_loss" in h]
    assert r.metrics["steps"] < 30
    assert r.metrics["eval_loss"] == pytest.approx(min(evals))
    with pytest.raises(ConfigError, match="multiple of eval_steps"):
        job(tiny_model, max_steps=30, eval_steps=2, save_steps=3, early_stopping_patience=2)


# ---- checkpoint completeness: every optimizer-state layout, and no deletion when the check itself fails
import json as _json, shutil as _shutil, warnings as _warnings


def _fake_checkpoint(root, step, optim=("optimizer.pt",), weights="adapter_model.safetensors"):
    import torch
    from safetensors.torch import save_file
    ck = root / f"checkpoint-{step}"; ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text(_json.dumps({"global_step": step}))
    (ck / "scheduler.pt").write_bytes(b"s"); (ck / "rng_state.pth").write_bytes(b"r")
    if weights: save_file({"w": torch.zeros(2)}, str(ck / weights))
    for o in optim:
        if o.endswith("/"):
            (ck / o).mkdir(); (ck / o / "__0_0.distcp").write_bytes(b"x"); (ck / o / ".metadata").write_bytes(b"m")
        else:
            (ck / o).parent.mkdir(parents=True, exist_ok=True); (ck / o).write_bytes(b"o")
    return ck


@pytest.mark.parametrize("optim", ["optimizer.pt", "optimizer.bin", "optimizer_1.bin", "optimizer_0_rank0.bin", "optimizer_0/",
                                   "global_step5/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"])
def test_every_optimizer_layout_counts(tmp_path, optim):
    "accelerate's FSDP writes optimizer.bin (FULL_STATE_DICT) or optimizer_0/ (sharded): such checkpoints are complete, not deleted."
    ck = _fake_checkpoint(tmp_path, 5, optim=(optim,))
    assert last_checkpoint(tmp_path) == ck and ck.exists()


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model_fsdp.bin", "pytorch_model.bin"])
def test_fsdp_and_plain_weight_layouts_count(tmp_path, weights):
    ck = _fake_checkpoint(tmp_path, 2, optim=("optimizer.bin",), weights=weights)
    assert last_checkpoint(tmp_path) == ck


def test_sharded_fsdp_checkpoint_without_safetensors(tmp_path):
    ck = _fake_checkpoint(tmp_path, 3, optim=("optimizer_0/",), weights=None)
    (ck / "pytorch_model_fsdp_0").mkdir(); (ck / "pytorch_model_fsdp_0" / ".metadata").write_bytes(b"m")
    assert last_checkpoint(tmp_path) == ck


def test_positively_incomplete_checkpoints_are_removed(tmp_path):
    good = _fake_checkpoint(tmp_path, 1)
    no_optim = _fake_checkpoint(tmp_path, 2, optim=())
    cut_dcp = _fake_checkpoint(tmp_path, 3, optim=("optimizer_0/",)); (cut_dcp / "optimizer_0" / ".metadata").unlink()
    truncated = _fake_checkpoint(tmp_path, 4); (truncated / "adapter_model.safetensors").write_bytes(b"\x10\x00")
    sharded = _fake_checkpoint(tmp_path, 5, weights=None)
    (sharded / "model.safetensors.index.json").write_text(_json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors"}}))
    assert last_checkpoint(tmp_path) == good
    assert not any(p.exists() for p in (no_optim, cut_dcp, truncated, sharded))


def test_a_failing_check_never_deletes(tmp_path, monkeypatch):
    "When the completeness check itself raises (permissions, I/O), the checkpoint is kept, with a warning, and not resumed from."
    import llmops_nb.train as train
    good, newer = _fake_checkpoint(tmp_path, 1), _fake_checkpoint(tmp_path, 2)
    real = train._incomplete
    def flaky(ck):
        if ck == newer: raise PermissionError("permission denied: trainer_state.json")
        return real(ck)
    monkeypatch.setattr(train, "_incomplete", flaky)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        assert last_checkpoint(tmp_path) == good
    assert newer.exists() and any("completeness check failed" in str(w.message) for w in caught)
    from safetensors import safe_open                                      # an unexpected error inside the weights check: same
    def broken_open(*a, **k): raise OSError("I/O error")
    monkeypatch.setattr(train, "_incomplete", real)
    monkeypatch.setattr("safetensors.safe_open", broken_open)
    with _warnings.catch_warnings(record=True):
        _warnings.simplefilter("always")
        assert last_checkpoint(tmp_path) is None
    assert good.exists() and newer.exists()


# ---- resource figures: peak memory, tokens/s, FLOPs per token and MFU in the metrics (run record and W&B through `run`)
class _Recorder:
    "A stand-in for a `Run`: keeps what sft logs."
    id = "test-run"
    def __init__(self): self.logged = []
    def log(self, metrics, step=None): self.logged.append(metrics)


def test_resource_figures_in_metrics_and_logged(reference_job, tiny_model, tmp_path, monkeypatch):
    from llmops_nb.models import load_model
    from llmops_nb.train import model_flops_per_token
    m = reference_job.metrics
    assert m["peak_rss_mb"] > 0 and m["tokens_per_s"] > 0 and "peak_gpu_mem_mb" not in m
    assert m["peak_flops"] is None and m["mfu"] is None                        # CPU: no datasheet peak, no MFU
    base = load_model(tiny_model, device="cpu")
    n = sum(p.numel() for p in base.parameters()) - base.get_input_embeddings().weight.numel()   # untied: the input embedding is a lookup
    cfg, rep = base.config, reference_job.report
    assert m["flops_per_token"] == pytest.approx(6 * (n + m["trainable_params"]) + 12 * cfg.num_hidden_layers * cfg.hidden_size * rep["tokens"] / rep["kept"])
    # a peak given through the environment gives an MFU, logged with the rest under final/
    monkeypatch.setenv("LLMOPS_PEAK_FLOPS", "1e12")
    run = _Recorder()
    r = sft(job(tiny_model, max_steps=2, save_steps=2), ROWS[:20], out_dir=tmp_path / "mfu", run=run, verbose=False)
    assert r.metrics["peak_flops"] == 1e12
    assert r.metrics["mfu"] == pytest.approx(r.metrics["tokens_per_s"] * r.metrics["flops_per_token"] / 1e12)
    final = next(x for x in run.logged if "final/mfu" in x)
    assert final["final/mfu"] == r.metrics["mfu"] and final["final/peak_rss_mb"] == r.metrics["peak_rss_mb"]
    monkeypatch.setenv("LLMOPS_PEAK_FLOPS", "fast")
    with pytest.raises(ConfigError, match="LLMOPS_PEAK_FLOPS"):
        sft(job(tiny_model, max_steps=2, save_steps=2), ROWS[:20], out_dir=tmp_path / "bad", verbose=False)
    assert not (tmp_path / "bad").exists()                                     # refused before anything was written or trained


def test_peak_memory_window_and_bad_device():
    from llmops_nb.train import peak_memory
    code = textwrap.dedent("""
        import json
        from llmops_nb.train import peak_memory, reset_peak_memory
        reset_peak_memory("cpu")
        low = peak_memory("cpu")["peak_rss_mb"]
        block = bytearray(120 * 2**20); block[::4096] = b"\\1" * len(range(0, len(block), 4096))
        high = peak_memory("cpu")["peak_rss_mb"]
        del block
        reset = reset_peak_memory("cpu")
        print(json.dumps({"low": low, "high": high, "reset": reset, "after": peak_memory("cpu")["peak_rss_mb"]}))
    """)       # a fresh interpreter: a long test process reuses freed memory, so its resident set would not grow
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["high"] - m["low"] > 100
    if m["reset"]: assert m["after"] < m["low"] + 60
    with pytest.raises((ValueError, TypeError), match="dev"):
        peak_memory("gpu0")
