"scripts/gpu_check.py (make gpu-check): the clean refusal without CUDA, the table, the budget, and a CPU dry run of every step's code."
import importlib.util, json, os, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gc = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)       # dataclasses look their module up
spec.loader.exec_module(gc)
torch = pytest.importorskip("torch")


def _run(*args, cwd, env=None, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMOPS_HOME": str(cwd), **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _tree(d: Path) -> set: return {str(p.relative_to(d)) for p in d.rglob("*")}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is what a machine without CUDA does")
def test_without_cuda_it_says_so_runs_nothing_and_exits_0(tmp_path):
    before_runs = _tree(ROOT / "runs") if (ROOT / "runs").exists() else set()
    r = _run(cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "CUDA is not available" in r.stdout and "nothing was run" in r.stdout
    assert r.stderr == ""
    assert _tree(tmp_path) == set()                                              # touched nothing
    assert (_tree(ROOT / "runs") if (ROOT / "runs").exists() else set()) == before_runs


def test_bad_options_are_refused(tmp_path):
    r = _run("--device", "cpu", cwd=tmp_path)
    assert r.returncode == 2 and "--device cpu is for testing and needs --tiny" in r.stderr
    r = _run("--budget", "0", cwd=tmp_path)
    assert r.returncode == 2 and "--budget must be > 0" in r.stderr
    if not torch.cuda.is_available():
        r = _run("--device", "cuda", cwd=tmp_path)
        assert r.returncode == 2 and "CUDA is not available" in r.stderr
    assert _tree(tmp_path) == set()


def test_table_has_one_line_per_row_with_reason_and_ratio():
    rows = [gc.Row("lora bf16", figure="52,000 tok/s, MFU 21.3%", baseline="50,000 tok/s, MFU 20.5% (plain TRL)", ratio=1.04, seconds=61.4),
            gc.Row("qlora 4-bit", "skipped", reason="bitsandbytes does not import"),
            gc.Row("merge", "failed", reason="MergeCheckFailed: " + "x" * 200, seconds=3)]
    t = gc.format_table(rows, width=60).splitlines()
    assert t[0].split() == ["step", "status", "figure", "baseline", "ratio", "s"] and set(t[1]) <= {"-", " "}
    assert len(t) == 2 + len(rows)
    assert "1.04x" in t[2] and t[2].rstrip().endswith("61")
    assert "skipped: bitsandbytes does not import" in t[3]
    assert "failed: MergeCheckFailed: xxx" in t[4] and "..." in t[4] and "x" * 100 not in t[4]
    assert all(len(line) <= len(t[1]) for line in t)                             # nothing wider than the rule
    assert gc.fmt_pct(None) == "n/a" and gc.fmt_pct(0.2134) == "21.3%" and gc.fmt_ratio(None) == ""


class Clock:
    def __init__(self): self.t = 0.0
    def __call__(self): return self.t


def test_budget_cuts_limits_to_what_is_left_and_refuses_to_start_late():
    clock = Clock()
    b = gc.Budget(480, clock=clock)
    assert b.allot(120, 30) == 120
    clock.t = 400
    assert b.left() == 80 and b.allot(120, 30) == 80                           # cut to the rest
    clock.t = 460
    assert b.allot(120, 30) is None and b.allot(45, 10) == 20                  # too little for a long step, enough for a short one
    with pytest.raises(ValueError, match="total_s"):
        gc.Budget(0)
    assert sum(limit for limit, _ in gc.LIMITS.values()) <= 8 * 60 + 120       # the limits are shares of 8 minutes, not 8 minutes each


def test_run_step_turns_every_outcome_into_a_row():
    clock = Clock()
    b = gc.Budget(100, clock=clock)
    limits = {"ok": (10, 1), "skip": (10, 1), "boom": (10, 1), "slow": (0.3, 0.1), "late": (10, 5)}
    ok = gc.run_step("ok", lambda ctx: gc.Row("whatever", figure="1 tok/s"), None, b, limits)
    assert (ok.name, ok.status, ok.figure) == ("ok", "ok", "1 tok/s") and ok.seconds >= 0
    def skip(ctx): raise gc.Skip("needs CUDA")
    assert (r := gc.run_step("skip", skip, None, b, limits)).status == "skipped" and r.reason == "needs CUDA"
    def boom(ctx): raise RuntimeError("bad\nthing")
    assert (r := gc.run_step("boom", boom, None, b, limits)).status == "failed" and r.reason == "RuntimeError: bad thing"
    t0 = time.monotonic()
    r = gc.run_step("slow", lambda ctx: time.sleep(5), None, b, limits)
    assert r.status == "failed" and "timed out" in r.reason and time.monotonic() - t0 < 3
    clock.t = 97
    r = gc.run_step("late", lambda ctx: gc.Row("late"), None, b, limits)
    assert r.status == "failed" and r.reason.startswith("not run: 3s of the 100s budget left")


def test_mfu_math_of_the_rows():
    from llmops_nb.train import mfu, model_flops_per_token, peak_flops
    # SmolLM2-135M (134.5M parameters, tied embeddings) at 100k tokens/s on an H100 SXM: 6N * 1e5 / 989e12
    assert mfu(1e5, model_flops_per_token(134_515_008), peak_flops("NVIDIA H100 80GB HBM3")) == pytest.approx(6 * 134_515_008 * 1e5 / 989e12)
    assert gc._speed({"tokens_per_s": 12345.6, "mfu": 0.0816, "peak_gpu_mem_mb": 2048}) == "12,346 tok/s, MFU 8.2%, 2.0 GiB"
    assert gc._speed({"tokens_per_s": 10.0, "mfu": None}) == "10 tok/s, MFU n/a"


def test_faiss_comparison_mechanics_on_cpu():
    "The comparison the faiss-gpu row makes, with both sides on the CPU: identical top-k, two throughputs."
    r = gc.faiss_compare(n=3000, queries=20, gpu=False)
    assert r["agreement"] == 1.0 and r["cpu_qps"] > 0 and r["gpu_qps"] > 0


def test_cpu_dry_run_of_every_step(tmp_path):
    "--device cpu --tiny: every step's code runs (QLoRA and faiss-gpu skip with their reasons); one table; the JSON record."
    out = tmp_path / "rec.json"
    r = _run("--device", "cpu", "--tiny", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    table = r.stdout.split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in table[2:]] == ["doctor", "base", "lora", "qlora", "merge", "resume", "faiss-gpu", "generation"]
    rec = json.loads(out.read_text())
    rows = {x["name"]: x for x in rec["rows"]}
    assert rec["ok"] and rec["device"] == "cpu" and rec["tiny"] and rec["total_s"] < rec["budget_s"]
    assert rows["qlora 4-bit"]["status"] == "skipped" and "CUDA" in rows["qlora 4-bit"]["reason"]
    assert rows["faiss-gpu"]["status"] == "skipped" and "faiss-gpu" in rows["faiss-gpu"]["reason"]
    lora = rows["lora bf16"]
    assert lora["status"] == "ok" and lora["data"]["llmops_nb"]["tokens_per_s"] > 0 and lora["data"]["plain_trl"]["tokens_per_s"] > 0
    assert lora["ratio"] == pytest.approx(lora["data"]["llmops_nb"]["tokens_per_s"] / lora["data"]["plain_trl"]["tokens_per_s"])
    assert lora["data"]["llmops_nb"]["mfu"] is None and lora["data"]["llmops_nb"]["peak_rss_mb"] > 0
    assert rows["merge"]["status"] == "ok" and rows["merge"]["data"]["passed"]
    res = rows["resume"]
    assert res["status"] == "ok" and res["data"]["max_abs_diff"] == 0.0 and res["data"]["resumed_from"].startswith("checkpoint-")
    assert rows["generation"]["status"] == "ok" and rows["generation"]["data"]["cpu"]["single_tok_s"] > 0
    assert not Path(rec["work"]).exists()
    assert _tree(tmp_path) == {"rec.json"}                                      # scratch removed; nothing else written
