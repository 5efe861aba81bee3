#!/usr/bin/env python
"""`make gpu-check`: prove the GPU path of llmops-nb in at most 8 minutes, as one table.

On a machine without CUDA it prints that CUDA is not available, runs nothing, writes nothing and exits 0.
On a CUDA machine it runs these steps, each with its own time limit inside one 8-minute budget:

  doctor        `llmops doctor`'s checks
  base model    the packaged SmolLM2-135M, converted to a plain HF folder (cached after the first time)
  lora bf16     LoRA steps through `llmops_nb.train.sft`, tokens/s and MFU, against a plain TRL script (SFTTrainer +
                LoraConfig written here) with the same data, steps, batch and LoRA settings, in the same run
  qlora 4-bit   the same through bitsandbytes 4-bit (only when bitsandbytes imports), against the bf16 LoRA figure
  merge         `merge_adapter` of the LoRA adapter, with its logit-equivalence check
  resume        a training subprocess SIGKILLed after its first checkpoint, run again, compared with an uninterrupted run
  faiss-gpu     the same FAISS index searched on the GPU and on the CPU (when faiss-gpu is installed)
  generation    tokens/s of the packaged model through `HFGenerator` on CUDA, against the CPU

It prints ONE table (name, status, figure, baseline, ratio, seconds), writes the same as JSON
(runs/gpu_check/<id>.json, or --out), and exits 1 when any row failed.

Testing only: `--device cpu --tiny` runs the same steps with a tiny random model on the CPU, so that the code of every
step is exercised where there is no GPU (tests/repo/test_gpu_check.py); its figures say nothing about a GPU.
"""
from __future__ import annotations
import argparse, contextlib, json, os, signal, subprocess, sys, tempfile, time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
               ("WANDB_MODE", "disabled"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_k, _v)

BUDGET_S = 480.0                     # the whole check: 8 minutes
LIMITS = {                           # step -> (time limit in s, least time worth starting it with)
    "doctor": (60, 10), "base model": (90, 10), "lora bf16": (120, 30), "qlora 4-bit": (75, 20), "merge": (45, 10),
    "resume": (120, 30), "faiss-gpu": (45, 10), "generation": (45, 10)}
# sizes: (steps, batch, max_length) of the training steps
FULL = dict(model="smollm2-135m-instruct", steps=30, qlora_steps=20, batch=8, max_length=512, resume_steps=8, save_steps=4)
TINY = dict(model=None, steps=4, qlora_steps=2, batch=4, max_length=96, resume_steps=6, save_steps=3)
LORA = dict(lora_r=16, lora_alpha=32, lora_dropout=0.05, learning_rate=2e-4)


# ---- rows, the table, the budget ------------------------------------------------------------------------------------------
@dataclass
class Row:
    "One line of the table; `data` keeps the raw numbers for the JSON record."
    name: str
    status: str = "ok"                  # ok | failed | skipped
    figure: str = ""
    baseline: str = ""
    ratio: Optional[float] = None
    seconds: float = 0.0
    reason: str = ""                    # why it failed or was skipped; notes on an ok row
    data: dict = field(default_factory=dict)


class Skip(Exception):
    "A step that does not apply here (no bitsandbytes, no faiss-gpu, no CUDA): the row says why."


class StepTimeout(Exception):
    "A step ran past its time limit."


def fmt_ratio(r: Optional[float]) -> str: return "" if r is None else f"{r:.2f}x"
def fmt_pct(x: Optional[float]) -> str: return "n/a" if x is None else f"{100 * x:.1f}%"


def format_table(rows: list, width: int = 70) -> str:
    "The check's one table: name, status (with the reason of a failed or skipped row), figure, baseline, ratio, seconds."
    head = ("step", "status", "figure", "baseline", "ratio", "s")
    body = []
    for r in rows:
        status = r.status if not r.reason or r.status == "ok" else f"{r.status}: {r.reason}"
        if len(status) > width: status = status[:width - 3] + "..."
        body.append((r.name, status, r.figure, r.baseline, fmt_ratio(r.ratio), f"{r.seconds:.0f}"))
    ws = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = lambda cells: "  ".join(c.rjust(w) if i >= 4 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, ws))).rstrip()
    return "\n".join([line(head), "  ".join("-" * w for w in ws), *map(line, body)])


class Budget:
    "The check's time: each step gets its own limit, cut to what is left of the total."
    def __init__(self, total_s: float = BUDGET_S, clock: Callable[[], float] = time.monotonic):
        if total_s <= 0: raise ValueError(f"budget: total_s must be > 0, got {total_s}")
        self.total, self.clock, self.start = float(total_s), clock, clock()

    def left(self) -> float: return self.total - (self.clock() - self.start)

    def allot(self, limit_s: float, min_s: float = 10.0) -> Optional[float]:
        "Seconds a step may run: its limit, or less when less is left; None when less than `min_s` is left (the step is not started)."
        left = self.left()
        return None if left < min_s else min(float(limit_s), left)


@contextlib.contextmanager
def time_limit(seconds: float):
    "Raise StepTimeout in the main thread after `seconds` (SIGALRM); a no-op where there is no SIGALRM."
    if not hasattr(signal, "setitimer"): yield; return
    def on_alarm(signum, frame): raise StepTimeout(f"timed out after {seconds:.0f}s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, seconds))
    try: yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_step(name: str, fn: Callable, ctx, budget: Budget, limits: dict = LIMITS) -> Row:
    "Run one step within its share of the budget; every outcome (ok, skipped, failed, timed out, not started) is a row."
    limit, least = limits[name]
    allowed = budget.allot(limit, least)
    if allowed is None:
        return Row(name, "failed", reason=f"not run: {max(0.0, budget.left()):.0f}s of the {budget.total:.0f}s budget left, it needs {least}s")
    log(f"{name} (up to {allowed:.0f}s) ...")
    t0 = time.monotonic()
    try:
        with time_limit(allowed), contextlib.redirect_stdout(sys.stderr):      # library chatter stays off the table
            row = fn(ctx)
    except Skip as e: row = Row(name, "skipped", reason=str(e))
    except StepTimeout: row = Row(name, "failed", reason=f"timed out after {allowed:.0f}s")
    except Exception as e: row = Row(name, "failed", reason=f"{type(e).__name__}: {' '.join(str(e).split())[:500]}")
    row.name, row.seconds = name, time.monotonic() - t0
    log(f"{name}: {row.status} {row.figure} {row.reason}".rstrip())
    return row


def log(msg: str) -> None: print(f"[gpu-check] {msg}", file=sys.stderr, flush=True)


# ---- the steps ------------------------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    "What the steps share."
    device: str                         # cuda, or cpu for the --tiny test run
    tiny: bool
    work: Path                          # scratch folder, removed at the end
    sizes: dict
    model: Optional[str] = None         # model folder, set by the base model step
    rows: list = field(default_factory=list)
    results: dict = field(default_factory=dict)

    @property
    def dtype(self) -> str: return "bfloat16" if self.device == "cuda" else "float32"


def tiny_rows(n: int = 24) -> list:
    "Conversations for the --tiny run (the tiny tokenizer knows little else)."
    sys_msg = {"role": "system", "content": "You are the Kestrel support assistant."}
    return [{"id": f"c{i}", "messages": [sys_msg, {"role": "user", "content": f"How long is the warranty on product {i}?"},
                                         {"role": "assistant", "content": f"Product {i} has a two year warranty."}]} for i in range(n)]


def step_doctor(ctx: Ctx) -> Row:
    from llmops_nb.doctor import doctor
    checks = doctor(load_models=not ctx.tiny)
    bad = [c for c in checks if c["status"] == "fail"]
    counts = {s: sum(c["status"] == s for c in checks) for s in ("ok", "warn", "fail")}
    torch_line = next((c["detail"] for c in checks if c["check"] == "torch"), "")
    return Row("doctor", "failed" if bad else "ok", figure=f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail",
               reason="; ".join(f"{c['check']}: {c['detail']}" for c in bad or [c for c in checks if c["status"] == "warn"])[:300] or torch_line,
               data={"checks": checks})


def step_base_model(ctx: Ctx) -> Row:
    from llmops_nb.train import conversations
    if ctx.tiny:
        from llmops_nb.models import make_tiny_model
        ctx.model, ctx.rows = str(make_tiny_model(ctx.work / "tiny")), tiny_rows()
        return Row("base model", figure="tiny random Llama (--tiny)")
    from llmops_nb.core import pkg_root
    from llmops_nb.models import resolve_model
    ctx.model = str(resolve_model(ctx.sizes["model"]))
    sample = next(p for p in (Path("data/sample/sft.jsonl"), pkg_root() / "data" / "sample" / "sft.jsonl") if p.is_file())
    ctx.rows = conversations(sample)[0]
    return Row("base model", figure=f"{ctx.sizes['model']}, {len(ctx.rows)} conversations", data={"folder": ctx.model, "data": str(sample)})


def _warm(ctx: Ctx) -> None:
    "One forward and backward pass at the training shape, so that neither timed run pays CUDA's start-up."
    if ctx.device != "cuda": return
    import torch
    from llmops_nb.models import load_model
    m = load_model(ctx.model, device="cuda", dtype="bfloat16")
    x = torch.randint(0, m.config.vocab_size, (ctx.sizes["batch"], 256), device="cuda")
    for _ in range(2): m(input_ids=x, labels=x).loss.backward()
    torch.cuda.synchronize(); del m; torch.cuda.empty_cache()


def lib_sft(ctx: Ctx, out: str, steps: int, quantize: str = "none", **kw):
    "The library's training path, at the check's sizes."
    from llmops_nb.train import SFTConfig, sft
    s = ctx.sizes
    cfg = SFTConfig(base_model=ctx.model, device=ctx.device, dtype=ctx.dtype, quantize=quantize, max_steps=steps, batch_size=s["batch"],
                    max_length=s["max_length"], save_steps=steps, logging_steps=5, activation_checkpointing=False, max_dropped=1.0,
                    **{**LORA, **kw})
    return sft(cfg, ctx.rows, out_dir=ctx.work / out, verbose=False)


def plain_trl(model_dir: str, rows: list, out_dir: Path, device: str, steps: int, batch: int, max_length: int) -> dict:
    "The baseline: a plain TRL script (SFTTrainer + LoraConfig, nothing of llmops_nb in the loop); tokens/s and MFU as sft measures them."
    import torch, datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer
    from llmops_nb.train import mfu, model_flops_per_token, peak_flops
    cuda = device == "cuda"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    args = SFTConfig(output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=batch, max_length=max_length,
                     learning_rate=LORA["learning_rate"], lr_scheduler_type="cosine", logging_steps=5, save_strategy="steps", save_steps=steps,
                     report_to="none", bf16=cuda, use_cpu=not cuda, activation_checkpointing=False, disable_tqdm=True, seed=42,
                     dataloader_num_workers=0)
    lora = LoraConfig(r=LORA["lora_r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"], target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list([{"messages": r["messages"]} for r in rows]),
                         processing_class=tok, peft_config=lora)
    trainer.remove_callback(PrinterCallback)
    lengths = [min(len(x), max_length) for x in trainer.train_dataset["input_ids"]]
    fpt = model_flops_per_token(trainer.model, seq_len=sum(lengths) / len(lengths))
    t0 = time.time()
    trainer.train()
    if cuda: torch.cuda.synchronize()
    wall = time.time() - t0
    tokens = next((h["num_tokens"] for h in reversed(trainer.state.log_history) if "num_tokens" in h), 0)
    tps = tokens / wall
    peak = peak_flops(torch.cuda.get_device_name() if cuda else device, torch.bfloat16 if cuda else torch.float32)
    return {"tokens_per_s": tps, "train_tokens": tokens, "train_runtime_s": wall, "flops_per_token": fpt, "peak_flops": peak, "mfu": mfu(tps, fpt, peak)}


def _speed(m: dict) -> str:
    mem = m.get("peak_gpu_mem_mb")
    return f"{m['tokens_per_s']:,.0f} tok/s, MFU {fmt_pct(m.get('mfu'))}" + (f", {mem / 1024:.1f} GiB" if mem else "")


def step_lora(ctx: Ctx) -> Row:
    if not ctx.model: raise Skip("needs the base model (its step failed)")
    _warm(ctx)
    res = lib_sft(ctx, "lora", ctx.sizes["steps"])
    ctx.results["adapter"], ctx.results["lora"] = res.adapter_dir, res.metrics
    base = plain_trl(ctx.model, ctx.rows, ctx.work / "trl", ctx.device, ctx.sizes["steps"], ctx.sizes["batch"], ctx.sizes["max_length"])
    return Row("lora bf16", figure=_speed(res.metrics), baseline=_speed(base) + " (plain TRL)",
               ratio=res.metrics["tokens_per_s"] / base["tokens_per_s"], reason=f"{res.metrics['steps']} steps of batch {ctx.sizes['batch']}",
               data={"llmops_nb": res.metrics, "plain_trl": base})


def step_qlora(ctx: Ctx) -> Row:
    if ctx.device != "cuda": raise Skip("QLoRA needs CUDA")
    try: import bitsandbytes  # noqa: F401
    except Exception as e: raise Skip(f"bitsandbytes does not import ({type(e).__name__}); pip install -e '.[gpu]'") from None
    if not ctx.model: raise Skip("needs the base model (its step failed)")
    res = lib_sft(ctx, "qlora", ctx.sizes["qlora_steps"], quantize="4bit")
    lora = ctx.results.get("lora")
    return Row("qlora 4-bit", figure=_speed(res.metrics), baseline=(_speed(lora) + " (LoRA bf16)") if lora else "",
               ratio=res.metrics["tokens_per_s"] / lora["tokens_per_s"] if lora else None, data={"llmops_nb": res.metrics})


def step_merge(ctx: Ctx) -> Row:
    from llmops_nb.train import merge_adapter
    ad = ctx.results.get("adapter")
    if ad is None: raise Skip("needs the LoRA adapter of the lora step, which did not finish")
    check = merge_adapter(ad, ctx.work / "merged", device=ctx.device, dtype="float32")   # fp32: the strict 1e-3 tolerance
    return Row("merge", figure=f"max |logit diff| {check['max_abs_diff']:.2g}", baseline=f"tol {check['tol']:.2g}", data=check,
               reason=f"{check['samples']} sequences, {check['dtype']} on {ctx.device}")


def _resume_spec(ctx: Ctx, out: Path, flag: Optional[Path]) -> Path:
    "The spec a resume child reads: model, data file, sizes, and (for the run to be killed) where to signal."
    s = ctx.sizes
    rows_file = ctx.work / "resume_rows.jsonl"
    if not rows_file.exists(): rows_file.write_text("".join(json.dumps(r) + "\n" for r in ctx.rows))
    kw = dict(max_steps=s["resume_steps"], save_steps=s["save_steps"], eval_steps=s["save_steps"], batch_size=s["batch"],
              max_length=s["max_length"], device=ctx.device, dtype=ctx.dtype, quantize="none", logging_steps=1,
              activation_checkpointing=False, max_dropped=1.0, **LORA)
    spec = out.parent / f"{out.name}.{'kill' if flag else 'run'}.json"
    spec.write_text(json.dumps({"model": ctx.model, "rows": str(rows_file), "out": str(out), "kw": kw, "flag": str(flag) if flag else None,
                                "stop_after": s["save_steps"] + 1}))
    return spec


def resume_child(spec_path: str) -> int:
    "A resume subprocess: train per the spec; with a flag, signal after the step past the first checkpoint and wait to be killed."
    import torch
    from transformers import TrainerCallback
    from llmops_nb.core import read_jsonl
    from llmops_nb.train import SFTConfig, sft
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    spec = json.loads(Path(spec_path).read_text())
    rows = read_jsonl(spec["rows"])
    class Stall(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if spec["flag"] and state.global_step >= spec["stop_after"]:
                Path(spec["flag"]).write_text(str(state.global_step)); time.sleep(3600)
    sft(SFTConfig(base_model=spec["model"], **spec["kw"]), rows[:-4], rows[-4:], out_dir=spec["out"], callbacks=[Stall()], verbose=False)
    return 0


def _child(spec: Path) -> list: return [sys.executable, str(Path(__file__).resolve()), "--resume-child", str(spec)]


def step_resume(ctx: Ctx) -> Row:
    import torch
    from safetensors.torch import load_file
    from llmops_nb.train import SFTResult, last_checkpoint
    if not ctx.model: raise Skip("needs the base model (its step failed)")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    ref_out, out, flag = ctx.work / "resume_ref", ctx.work / "resume", ctx.work / "resume.flag"
    p = subprocess.Popen(_child(_resume_spec(ctx, out, flag)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        subprocess.run(_child(_resume_spec(ctx, ref_out, None)), env=env, check=True, capture_output=True, text=True)   # meanwhile: uninterrupted
        while not flag.exists():
            if p.poll() is not None: raise RuntimeError(f"the training child exited ({p.returncode}) before its first checkpoint: {p.stderr.read()[-500:]}")
            time.sleep(0.2)
        p.kill(); p.wait()
    finally:
        if p.poll() is None: p.kill(); p.wait()
    ck = last_checkpoint(out / "checkpoints")
    if (out / "adapter").exists() or ck is None: raise RuntimeError(f"after the kill: adapter written={(out / 'adapter').exists()}, last checkpoint={ck}")
    r = subprocess.run(_child(_resume_spec(ctx, out, None)), env=env, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f"the resumed run failed ({r.returncode}): {r.stderr[-800:]}")
    a, b = SFTResult.load(out), SFTResult.load(ref_out)
    wa, wb = load_file(a.adapter_dir / "adapter_model.safetensors"), load_file(b.adapter_dir / "adapter_model.safetensors")
    if wa.keys() != wb.keys(): raise RuntimeError("the resumed adapter has other tensors than the uninterrupted one")
    diff = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    scale = max(float(wb[k].float().abs().max()) for k in wb)
    tol = 0.0 if ctx.device == "cpu" else 1e-2 * scale             # CUDA kernels (attention backward) are not bit-deterministic
    ok = a.resumed_from == ck.name and diff <= tol
    return Row("resume", "ok" if ok else "failed", figure=f"from {a.resumed_from}, max |dw| {diff:.2g}, eval loss {a.metrics['eval_loss']:.4f}",
               baseline=f"uninterrupted: eval loss {b.metrics['eval_loss']:.4f}", reason="" if ok else f"differs beyond tol {tol:.2g}",
               data={"resumed_from": a.resumed_from, "max_abs_diff": diff, "tol": tol, "eval_loss": a.metrics["eval_loss"], "reference_eval_loss": b.metrics["eval_loss"]})


def faiss_compare(n: int = 100_000, dim: int = 384, queries: int = 200, k: int = 10, gpu: bool = True, seed: int = 0) -> dict:
    "The same flat VectorStore searched one query at a time on the GPU (gpu=True) and on the CPU: queries/s each and top-k agreement."
    import numpy as np
    from llmops_nb.embeddings import Embedder
    from llmops_nb.retrieval import VectorStore
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim), dtype=np.float32); vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    qs = vecs[rng.choice(n, queries, replace=False)] + 0.1 * rng.standard_normal((queries, dim), dtype=np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    emb = Embedder()
    if emb.dim != dim: raise RuntimeError(f"the packaged embedder has {emb.dim} dimensions, not {dim}")
    store = VectorStore(emb, index="flat", gpu=False)
    store.add([f"c{i}" for i in range(n)], [f"chunk {i}" for i in range(n)], embeddings=vecs)
    def timed(on_gpu: bool):
        store.gpu = on_gpu; store._reset()
        store.search(qs[0], k=k)                                                     # first call moves the index (GPU)
        t0 = time.perf_counter()
        out = [[h.id for h in store.search(q, k=k)] for q in qs]
        return out, queries / (time.perf_counter() - t0)
    cpu_ids, cpu_qps = timed(False)
    gpu_ids, gpu_qps = timed(gpu)
    if gpu and not store.gpu: raise RuntimeError("the store fell back to the CPU: the index could not be moved to the GPU")
    return {"gpu_qps": gpu_qps, "cpu_qps": cpu_qps, "agreement": sum(a == b for a, b in zip(cpu_ids, gpu_ids)) / queries, "n": n, "queries": queries}


def step_faiss(ctx: Ctx) -> Row:
    import faiss
    from llmops_nb.retrieval import gpu_available
    if not hasattr(faiss, "StandardGpuResources"): raise Skip("faiss-gpu not installed")
    if not gpu_available(): raise Skip("faiss-gpu installed but it sees no GPU")
    r = faiss_compare()
    ok = r["agreement"] >= 0.99
    return Row("faiss-gpu", "ok" if ok else "failed", figure=f"{r['gpu_qps']:,.0f} queries/s (GPU)", baseline=f"{r['cpu_qps']:,.0f} queries/s (CPU)",
               ratio=r["gpu_qps"] / r["cpu_qps"], reason=f"{r['n']:,} vectors, top-10 identical for {r['agreement']:.0%} of queries", data=r)


PROMPTS = ["What does the warranty cover?", "How do I return a kettle?", "When does customer care answer the phone?",
           "Can I pay by invoice?", "Where is my order?", "How do I register a product?", "What is the return policy?", "Do you ship abroad?"]


def generation_speed(model: str, device: str, new_tokens: int, batch: int = 0) -> dict:
    "Decoding tokens/s of HFGenerator: one stream, and (batch > 0) `batch` prompts at once."
    from llmops_nb.generate import HFGenerator
    g = HFGenerator(model, device=device, chat=True, batch_size=max(1, batch))
    g.generate(PROMPTS[0], max_new_tokens=4)                                            # warm-up
    one = g.generate(PROMPTS[1], max_new_tokens=new_tokens)
    out = {"single_tok_s": one.completion_tokens / one.latency_s, "single_tokens": one.completion_tokens}
    if batch:
        t0 = time.perf_counter()
        gens = g.generate_batch((PROMPTS * batch)[:batch], max_new_tokens=new_tokens)
        out["batch_tok_s"], out["batch"] = sum(x.completion_tokens for x in gens) / (time.perf_counter() - t0), batch
    return out


def step_generation(ctx: Ctx) -> Row:
    if not ctx.model: raise Skip("needs the base model (its step failed)")
    fast = generation_speed(ctx.model, ctx.device, 16 if ctx.tiny else 128, batch=4 if ctx.tiny else 8)
    base = generation_speed(ctx.model, "cpu", 16 if ctx.tiny else 32) if ctx.device == "cuda" else None
    return Row("generation", figure=f"{fast['single_tok_s']:,.0f} tok/s single, {fast['batch_tok_s']:,.0f} tok/s batch {fast['batch']}",
               baseline=f"{base['single_tok_s']:,.0f} tok/s single (CPU)" if base else "", ratio=fast["single_tok_s"] / base["single_tok_s"] if base else None,
               data={ctx.device: fast, **({"cpu": base} if base else {})})


STEPS = [("doctor", step_doctor), ("base model", step_base_model), ("lora bf16", step_lora), ("qlora 4-bit", step_qlora), ("merge", step_merge),
         ("resume", step_resume), ("faiss-gpu", step_faiss), ("generation", step_generation)]


# ---- entry point ----------------------------------------------------------------------------------------------------------
def no_cuda_message(torch_version: str, built_with_cuda: bool) -> str:
    why = "no CUDA device is visible" if built_with_cuda else "this torch is a CPU build"
    return (f"gpu-check: CUDA is not available on this machine (torch {torch_version}: {why}); nothing was run.\n"
            "Run `make gpu-check` on a machine with an NVIDIA GPU to check the GPU path (about 8 minutes).")


def default_out() -> Path:
    from llmops_nb.core import load_settings
    from llmops_nb.runs import new_run_id
    return load_settings().path("runs_dir") / "gpu_check" / f"{new_run_id()}.json"


def check(device: str, tiny: bool, out: Optional[Path], budget_s: float = BUDGET_S, keep: bool = False) -> int:
    "Run every step, print the table, write the JSON record; 1 when a row failed."
    import shutil, torch
    from llmops_nb.core import host_info, write_json
    budget = Budget(budget_s)
    ctx = Ctx(device, tiny, Path(tempfile.mkdtemp(prefix="llmops-gpu-check-")), TINY if tiny else FULL)
    try: rows = [run_step(name, fn, ctx, budget) for name, fn in STEPS]
    finally:
        if not keep: shutil.rmtree(ctx.work, ignore_errors=True)
    total = budget.total - budget.left()
    print(format_table(rows))
    failed = [r.name for r in rows if r.status == "failed"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} steps passed or skipped, {len(failed)} failed; {total:.0f}s of the {budget.total:.0f}s budget"
          + (f" on {torch.cuda.get_device_name()}" if device == "cuda" else f" on {device} (--tiny test run)"))
    out = out or default_out()
    record = {"format": "llmops-nb/gpu-check@1", "device": device, "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
              "tiny": tiny, "work": str(ctx.work), "budget_s": budget.total, "total_s": total, "ok": not failed, "rows": [asdict(r) for r in rows], "host": host_info(),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(out, record)
    print(f"record: {out}")
    return 1 if failed else 0


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description="Prove the GPU path in at most 8 minutes (make gpu-check); says so and exits 0 without CUDA.")
    ap.add_argument("--out", type=Path, help="where to write the JSON record (default: runs/gpu_check/<id>.json)")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="total seconds for all steps (default 480)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (adapters, merged model) for inspection")
    ap.add_argument("--device", choices=["cuda", "cpu"], help="TESTING ONLY: cpu with --tiny runs every step's code on the CPU")
    ap.add_argument("--tiny", action="store_true", help="TESTING ONLY: a tiny random model and a few steps instead of SmolLM2-135M")
    ap.add_argument("--resume-child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.resume_child: return resume_child(a.resume_child)
    if a.budget <= 0: ap.error(f"--budget must be > 0, got {a.budget}")
    import torch
    have = torch.cuda.is_available()
    if a.device == "cpu" and not a.tiny: ap.error("--device cpu is for testing and needs --tiny; on a CUDA machine run it without options")
    if a.device is None and not have:
        print(no_cuda_message(torch.__version__, torch.version.cuda is not None))
        return 0
    if a.device == "cuda" and not have: ap.error("--device cuda: " + no_cuda_message(torch.__version__, torch.version.cuda is not None).splitlines()[0])
    return check(a.device or "cuda", a.tiny, a.out, a.budget, a.keep)


if __name__ == "__main__":
    sys.exit(main())
