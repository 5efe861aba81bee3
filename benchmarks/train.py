"""Training throughput: tokens/s of `llmops_nb.train.sft` against a plain TRL `SFTTrainer` script, packing on vs off.

Data: the 270 conversations of `data/sample/sft.jsonl`. Model: the packaged SmolLM2-135M-Instruct (`--model
smollm2-135m-instruct`, converted once into the cache on first use) or a random ~1M-parameter Llama
(`--model tiny`, `make_tiny_model`, for a quick smoke run). LoRA r=16, alpha=32, dropout 0.05, all-linear;
fp32 on CPU, bf16 (no quantization) on CUDA; activation checkpointing off on CPU, on on CUDA (sft's "auto").

(a) `sft` against the baseline in the same process: a plain TRL script as a user writes it, SFTTrainer on the
    model from `AutoModelForCausalLM.from_pretrained`, the rows with only `messages`, the same tokenizer and
    chat template (`load_tokenizer`, with generation markers), `assistant_only_loss=True`, and the same steps,
    batch size, max_length, learning rate and schedule, seed (set before the trainer, as sft does, and
    data_seed: same LoRA init and data order), logging (no printed log dicts, no progress bar) and threads.
    Equal tokens seen and equal first-step and final losses show both ran the same computation. The baseline
    saves nothing (save_strategy='no'); sft writes a checkpoint at the final step inside `trainer.train()`
    (save_steps > steps cannot avoid it): part of its real cost, also shown apart ("tail s").
    tokens/s = TRL's own `num_tokens` (real, non-padding tokens the model saw) / wall time of `trainer.train()`
    (sft's `train_runtime_s` times the same call); model loading and data preparation are outside it ("setup
    s"). After a 1-step warm-up of both, plain and sft alternate `--repeats` times; medians are compared
    (target: sft/plain >= 0.95x), with robust checks: training loop only, median step time, and the fastest
    time of each step over the repeats (step k gets the same batch in every run) summed.
(b) packing: sft with packing=False vs packing=True (TRL 'bfd', padding-free), same steps: tokens/s and the
    share of padded positions in the batches the model saw, from a forward pre-hook on the model in every run
    (for packed batches it also checks: no attention_mask, cu_seq_lens covering every position). The packed
    runs (`--packing-repeats`, 1 for SmolLM2: a packed step holds ~3x the tokens) sit inside the alternation.
(c) on CUDA only: model FLOPs utilization = 6 * parameters * tokens/s / peak bf16 dense FLOP/s of the GPU
    (table by device name, or `--peak-tflops`); skipped with a note on CPU.

(d) `--compare-methods`: instead of (a)-(c), `llmops_nb.train.compare_methods` trains one adapter per method (LoRA,
    prompt tuning, prefix tuning; each with its METHOD_DEFAULTS learning rate) on the sample conversations split by
    source document (10% held out), with the same steps, batch, max_length and seed, and answers `--answer-rows`
    held-out questions greedily. Baselines measured in the same run: LoRA (eval loss, trainable parameters and
    training time as ratios against it) and the untouched base model (token F1 of its answers).

The CPU is shared with other jobs here: the load average is printed before and after, and single runs vary by
about +-10%. Run from the repository root (about 6 min with the defaults on a 2-core CPU, tiny under 1 min):

    .venv/bin/python benchmarks/train.py [--model smollm2-135m-instruct|tiny|FOLDER] [--steps 4] [--batch-size 4]
        [--max-length 512] [--repeats 2] [--packing-repeats 1] [--threads 0] [--seed 42] [--out results.json]
    .venv/bin/python benchmarks/train.py --compare-methods [--model ...] [--steps 12] [--max-length 256] [--answer-rows 12]
"""
import argparse, json, os, shutil, statistics, sys, tempfile, time, warnings
from pathlib import Path
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="smollm2-135m-instruct", help="packaged model name, a model folder, or 'tiny'")
ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: 4 for SmolLM2, 10 for tiny)")
ap.add_argument("--batch-size", type=int, default=4)
ap.add_argument("--max-length", type=int, default=512)
ap.add_argument("--repeats", type=int, default=2)
ap.add_argument("--threads", type=int, default=0, help="torch threads; 0: llmops_nb.core.set_threads default")
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--lr", type=float, default=2e-4)
ap.add_argument("--logging-steps", type=int, default=10)
ap.add_argument("--packing-repeats", type=int, default=None, help="runs of packing=True (default: 1 for SmolLM2, --repeats for tiny); 0: skip")
ap.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 dense TFLOP/s of the GPU, if not in the table")
ap.add_argument("--out", default=None, help="write all figures as JSON here")
ap.add_argument("--compare-methods", action="store_true", help="(d): LoRA vs prompt tuning vs prefix tuning instead of (a)-(c)")
ap.add_argument("--answer-rows", type=int, default=12, help="(d): held-out questions answered for token F1")
a = ap.parse_args()

import torch, datasets, transformers, trl, peft
from transformers import AutoModelForCausalLM, TrainerCallback
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer
from llmops_nb.core import set_threads
from llmops_nb.models import load_tokenizer, make_tiny_model, resolve_model
from llmops_nb.train import SFTConfig, conversations, prepare, sft

from transformers import PrinterCallback
transformers.logging.set_verbosity_error(); transformers.utils.logging.disable_progress_bar(); datasets.disable_progress_bars()
threads = set_threads(a.threads)
cuda = torch.cuda.is_available()
dev, dt = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
ac = cuda                                           # sft's activation_checkpointing="auto"
tiny = a.model == "tiny"
steps = a.steps or (10 if tiny else 4)
packing_repeats = a.packing_repeats if a.packing_repeats is not None else (a.repeats if tiny else 1)
LORA = dict(r=16, alpha=32, dropout=0.05)
work = Path(tempfile.mkdtemp(prefix="bench_train_"))
root = Path(__file__).resolve().parent.parent
rows, _, _ = conversations(root / "data" / "sample" / "sft.jsonl")

t = time.perf_counter()
if tiny: ref = path = make_tiny_model(work / "tiny-model")
else: ref, path = a.model, resolve_model(a.model)      # packaged name: converted once into the cache (~50 s the first time)
tok = load_tokenizer(ref)
_, rep, _ = prepare(rows, tok, a.max_length)
print(f"model {ref} ({path}), device {dev}/{str(dt).replace('torch.', '')}, torch threads {threads}, {len(rows)} conversations: "
      f"{rep.tokens} tokens (p50 {rep.length['p50']}, max {rep.length['max']}), {rep.truncated} truncated, {len(rep.dropped)} dropped at max_length {a.max_length}")
print(f"steps {steps}, batch size {a.batch_size}, lr {a.lr}, seed {a.seed}, repeats {a.repeats}; versions: torch {torch.__version__}, "
      f"transformers {transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}  (setup {time.perf_counter() - t:.1f}s)")
if a.compare_methods:
    from llmops_nb.train import compare_methods, resolve_sft_data
    tr, ev, _, _ = resolve_sft_data(root / "data" / "sample" / "sft.jsonl", seed=a.seed)
    cfg = SFTConfig(base_model=str(path) if tiny else ref, max_length=a.max_length, max_steps=steps, batch_size=a.batch_size,
                    save_steps=steps, logging_steps=max(1, steps // 3), seed=a.seed)
    t = time.perf_counter()
    table = compare_methods(cfg, tr, ev, out_dir=work / "compare", answer_rows=a.answer_rows)
    print(f"\n(d) {len(tr)} training and {len(ev)} held-out conversations, {steps} steps of batch {a.batch_size}, "
          f"{a.answer_rows} held-out answers ({time.perf_counter() - t:.0f}s)\n" + table.round(4).to_string())
    lora, base_f1 = table.loc["lora"], table.loc["base", "token_f1"]
    for m in [m for m in table.index if m not in ("base", "lora")]:
        r = table.loc[m]
        print(f"{m:>14}: eval loss {r.eval_loss / lora.eval_loss:.3f}x LoRA's, trainable params {r.trainable_params / lora.trainable_params:.4f}x, "
              f"training time {r.train_runtime_s / lora.train_runtime_s:.2f}x; token F1 {r.token_f1:.3f} (base model {base_f1:.3f}, LoRA {lora.token_f1:.3f})")
    if a.out: Path(a.out).write_text(json.dumps(json.loads(table.reset_index().to_json(orient="records")), indent=2))
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0)
if rep.dropped: sys.exit(f"{len(rep.dropped)} conversations have nothing trainable within max_length {a.max_length}: the two scripts would not train on the same data; raise --max-length")

class Probe(TrainerCallback):
    "Timestamps of the training loop, and what the model is fed: positions, real tokens and sequences per forward."
    def __init__(self): self.begin = self.end = None; self.step_ends, self.saves, self.batches, self.hook = [], [], [], None
    def on_train_begin(self, args, state, control, model=None, **kw):
        self.begin = time.perf_counter()
        if model is not None: self.hook = model.register_forward_pre_hook(self.see, with_kwargs=True)
    def see(self, mod, args, kw):
        if not mod.training: return
        ids, am = kw.get("input_ids"), kw.get("attention_mask")
        cu = kw.get("cu_seq_lens_q")
        self.batches.append({"rows": ids.shape[0], "positions": ids.numel(), "real": int(am.sum()) if am is not None else ids.numel(),
                             "mask": am is not None, "seqs": (cu.numel() - 1) if cu is not None else ids.shape[0],
                             "covered": int(cu[-1]) if cu is not None else None})
    def on_step_end(self, args, state, control, **kw): self.step_ends.append(time.perf_counter())
    def on_save(self, args, state, control, **kw): self.saves.append(time.perf_counter())
    def on_train_end(self, args, state, control, **kw):
        self.end = time.perf_counter()
        if self.hook is not None: self.hook.remove()

def probe_figures(p: Probe) -> dict:
    b = p.batches
    pos, real = sum(x["positions"] for x in b), sum(x["real"] for x in b)
    steps_dt = [y - x for x, y in zip(p.step_ends, p.step_ends[1:])]
    step_s = [y - x for x, y in zip([p.begin] + p.step_ends, p.step_ends)]           # time of each step (step 1 includes loop start)
    return {"positions": pos, "real_tokens": real, "padding_share": 1 - real / max(1, pos), "forwards": len(b),
            "seqs_per_forward": statistics.mean(x["seqs"] for x in b) if b else 0, "positions_per_forward": pos / max(1, len(b)),
            "attention_mask": any(x["mask"] for x in b), "cu_seq_lens_cover_all": all(x["covered"] in (None, x["positions"]) for x in b),
            "loop_s": (p.step_ends[-1] - p.begin) if p.step_ends else None,          # train begin -> last step end
            "tail_s": (p.end - p.step_ends[-1]) if p.step_ends else None,            # after the last step: final log, checkpoint save
            "median_step_s": statistics.median(steps_dt) if steps_dt else None, "step_s": step_s, "saves": len(p.saves)}

def last_tokens(hist): return next((h["num_tokens"] for h in reversed(hist) if "num_tokens" in h), 0)
def flos(hist): return next((h["total_flos"] for h in reversed(hist) if "total_flos" in h), None)
def first_loss(hist): return next((h["loss"] for h in hist if "loss" in h), None)

def run_plain(n_steps: int) -> dict:
    "The baseline: a plain TRL script (model load and trainer set-up untimed in tokens/s, shown as setup)."
    t0 = time.perf_counter()
    out = work / f"plain-{time.time_ns()}"
    transformers.utils.logging.disable_progress_bar()            # no progress bars in the timed runs
    tokenizer = load_tokenizer(ref)                              # same chat template (with generation markers) as sft
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dt).to(dev)
    args = SFTConfig(output_dir=str(out), max_length=a.max_length, assistant_only_loss=True, per_device_train_batch_size=a.batch_size, learning_rate=a.lr,
                     max_steps=n_steps, lr_scheduler_type="cosine", warmup_steps=0.03, seed=a.seed, data_seed=a.seed,
                     logging_steps=a.logging_steps, logging_first_step=True, save_strategy="no", report_to="none",
                     use_cpu=not cuda, bf16=cuda, activation_checkpointing=ac, disable_tqdm=True)
    probe = Probe()
    transformers.set_seed(a.seed)                                # as sft does before its trainer: the same LoRA initialisation
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list([{"messages": r["messages"]} for r in rows]),
                         processing_class=tokenizer, callbacks=[probe],
                         peft_config=LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                target_modules="all-linear", task_type="CAUSAL_LM"))
    trainer.remove_callback(PrinterCallback)                     # as sft does: no log dicts printed (sft logs to a file instead)
    setup = time.perf_counter() - t0
    t = time.perf_counter(); res = trainer.train(); wall = time.perf_counter() - t
    hist = trainer.state.log_history
    r = {"wall_s": wall, "setup_s": setup, "tokens": last_tokens(hist), "steps": trainer.state.global_step, "loss": res.training_loss,
         "first_loss": first_loss(hist), "total_flos": flos(hist), "checkpoints": 0, **probe_figures(probe)}
    del trainer, model; shutil.rmtree(out, ignore_errors=True)
    return r

def run_sft(n_steps: int, packing: bool = False) -> dict:
    t0 = time.perf_counter()
    out = work / f"sft-{time.time_ns()}"
    probe = Probe()
    cfg = SFTConfig(base_model=str(path) if tiny else ref, max_length=a.max_length, packing=packing, lora_r=LORA["r"], lora_alpha=LORA["alpha"],
                    lora_dropout=LORA["dropout"], learning_rate=a.lr, max_steps=n_steps, batch_size=a.batch_size, save_steps=n_steps + 1,
                    logging_steps=a.logging_steps, seed=a.seed, quantize="none", device=dev)
    res = sft(cfg, rows, out_dir=out, callbacks=[probe], verbose=False)
    total = time.perf_counter() - t0
    m = res.metrics
    cks = sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*"))
    r = {"wall_s": m["train_runtime_s"], "setup_s": total - m["train_runtime_s"], "tokens": m["train_tokens"], "steps": m["steps"],
         "loss": m["train_loss"], "first_loss": first_loss(res.history), "sft_tokens_per_s": m["tokens_per_s"], "total_flos": flos(res.history), "checkpoints": len(cks),
         "checkpoint_names": cks, **probe_figures(probe)}
    shutil.rmtree(out, ignore_errors=True)
    return r

variants = {"plain TRL": lambda n: run_plain(n), "llmops sft": lambda n: run_sft(n), "sft packing": lambda n: run_sft(n, packing=True)}
packing_repeats = min(packing_repeats, a.repeats)
packed_before = {int((j + 0.5) * a.repeats / packing_repeats) for j in range(packing_repeats)}   # spread through the alternation
schedule = [k for i in range(a.repeats) for k in (["sft packing"] if i in packed_before else []) + ["plain TRL", "llmops sft"]]
load0 = os.getloadavg()
t = time.perf_counter()
for name in ("plain TRL", "llmops sft"): variants[name](1)                  # warm-up: imports, allocator, template compile
print(f"warm-up (1 step each of plain and sft): {time.perf_counter() - t:.1f}s; schedule: {' | '.join(schedule)}; load average {load0[0]:.2f}")
runs = {k: [] for k in dict.fromkeys(schedule)}
t_all = time.perf_counter()
for i, name in enumerate(schedule):
    r = variants[name](steps); r["tokens_per_s"] = r["tokens"] / r["wall_s"]; runs[name].append(r)
    print(f"  run {i + 1}/{len(schedule)} {name:<12} {r['tokens_per_s']:8.1f} tok/s  train {r['wall_s']:6.1f}s (median step {r['median_step_s']:.3f}s, "
          f"after last step {r['tail_s']:.2f}s)  setup {r['setup_s']:.1f}s  tokens {r['tokens']:.0f}  loss {r['loss']:.4f}", flush=True)
print(f"timed runs: {time.perf_counter() - t_all:.0f}s; load average before {load0[0]:.2f}, now {os.getloadavg()[0]:.2f} (other jobs on the CPU add noise)")

def med(name, key): return statistics.median(r[key] for r in runs[name])
print(f"\n{'variant':<14}{'tokens/s':>10}{'steps':>7}{'tokens':>8}{'train s':>9}{'step s':>8}{'tail s':>8}{'setup s':>9}{'padding':>9}{'loss':>9}")
for name in runs:
    print(f"{name:<14}{med(name, 'tokens_per_s'):>10.1f}{runs[name][0]['steps']:>7}{runs[name][0]['tokens']:>8.0f}{med(name, 'wall_s'):>9.2f}"
          f"{med(name, 'median_step_s'):>8.3f}{med(name, 'tail_s'):>8.2f}{med(name, 'setup_s'):>9.1f}{med(name, 'padding_share'):>9.1%}{med(name, 'loss'):>9.4f}")
ratio = med("llmops sft", "tokens_per_s") / med("plain TRL", "tokens_per_s")
loop_ratio = (med("llmops sft", "tokens") / med("llmops sft", "loop_s")) / (med("plain TRL", "tokens") / med("plain TRL", "loop_s"))
step_ratio = med("plain TRL", "median_step_s") / med("llmops sft", "median_step_s")
def best_loop(name):   # step k sees the same batch in every run of both variants: the fastest time of each step, summed
    return sum(min(col) for col in zip(*(r["step_s"] for r in runs[name])))
min_ratio = best_loop("plain TRL") / best_loop("llmops sft")
same = runs["llmops sft"][0]["tokens"] == runs["plain TRL"][0]["tokens"]
fl = (runs["plain TRL"][0]["first_loss"], runs["llmops sft"][0]["first_loss"])
print(f"ratio sft/plain: {ratio:.3f}x (target >= 0.95x: {'met' if ratio >= 0.95 else 'NOT met'}); training loop only "
      f"(train begin to last step, without sft's final checkpoint): {loop_ratio:.3f}x; median step time plain/sft: {step_ratio:.3f}x;\n  fastest time of each step over the repeats "
      f"(same batch), summed, plain/sft: {best_loop('plain TRL'):.2f}s/{best_loop('llmops sft'):.2f}s = {min_ratio:.3f}x (least sensitive to other jobs)")
print(f"same batches: {'yes' if same else 'NO'} (tokens seen {runs['plain TRL'][0]['tokens']:.0f} vs {runs['llmops sft'][0]['tokens']:.0f}, "
      f"first-step loss {fl[0]:.6f} vs {fl[1]:.6f}, final loss {med('plain TRL', 'loss'):.6f} vs {med('llmops sft', 'loss'):.6f}); "
      f"sft checkpoints written inside train(): {runs['llmops sft'][0]['checkpoint_names']}, "
      f"time after its last step {med('llmops sft', 'tail_s'):.2f}s vs plain {med('plain TRL', 'tail_s'):.2f}s")
summary = {"ratio_sft_plain": ratio, "ratio_loop_only": loop_ratio, "ratio_median_step": step_ratio, "ratio_fastest_steps": min_ratio, "target_met": ratio >= 0.95, "same_tokens": same}
off = runs["llmops sft"]
print(f"packing off: {med('llmops sft', 'tokens_per_s'):.1f} tok/s, padding share {med('llmops sft', 'padding_share'):.1%} "
      f"({off[0]['positions_per_forward']:.0f} positions per forward, {off[0]['seqs_per_forward']:.1f} sequences)", end="")
if "sft packing" in runs:
    on = runs["sft packing"]; speed = med("sft packing", "tokens_per_s") / med("llmops sft", "tokens_per_s")
    print(f"; packing on: {med('sft packing', 'tokens_per_s'):.1f} tok/s, padding share {med('sft packing', 'padding_share'):.1%} "
          f"({on[0]['positions_per_forward']:.0f} positions per forward, {on[0]['seqs_per_forward']:.1f} sequences, attention_mask "
          f"{'present' if on[0]['attention_mask'] else 'absent'}, cu_seq_lens cover every position: {on[0]['cu_seq_lens_cover_all']}); "
          f"speed-up {speed:.2f}x")
    summary["packing_speedup"] = speed
else: print()

n_params = None
if cuda:
    name = torch.cuda.get_device_name()
    table = {"H100 PCIE": 756, "H100": 989, "H200": 989, "A100": 312, "L4": 121}
    peak = a.peak_tflops or next((v for k, v in table.items() if k in name.upper()), None)
    cfg_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dt)
    n_params = sum(p.numel() for p in cfg_model.parameters()); del cfg_model
    for k in runs:
        tps = med(k, "tokens_per_s"); achieved = 6 * n_params * tps / 1e12
        hf = statistics.median(r["total_flos"] / r["wall_s"] for r in runs[k] if r["total_flos"]) / 1e12 if all(r["total_flos"] for r in runs[k]) else None
        summary[f"mfu {k}"] = achieved / peak if peak else None
        print(f"{name}: {k}: {tps:.0f} tok/s, 6*N*tokens/s = {achieved:.2f} TFLOP/s" + (f", Trainer total_flos/s = {hf:.2f} TFLOP/s" if hf else "")
              + (f", MFU {achieved / peak:.2%} of {peak} TFLOP/s bf16 dense" if peak else " (peak unknown: pass --peak-tflops for MFU)"))
else:
    print("GPU part (SmolLM2 LoRA tokens/s on CUDA, model FLOPs utilization): skipped, no CUDA device")

if a.out:
    Path(a.out).write_text(json.dumps({"config": {**vars(a), "steps": steps, "model_path": str(path), "device": dev, "dtype": str(dt),
                                                  "threads": threads, "n_params": n_params, "versions": {"torch": torch.__version__,
                                                  "transformers": transformers.__version__, "trl": trl.__version__, "peft": peft.__version__}},
                                       "runs": runs, "summary": summary}, indent=1, default=str))
    print(f"wrote {a.out}")
shutil.rmtree(work, ignore_errors=True)
