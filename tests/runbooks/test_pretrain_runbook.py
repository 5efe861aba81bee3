"The pretrain runbook through `llmops run`: model folder, lineage, W&B, a SIGKILL mid-training resumed to the same weights, and bad input."
import os, random, signal, subprocess, time
from pathlib import Path
import pytest
from safetensors.torch import load_file
from conftest import LLMOPS, llmops_run, run_dir_of, job_env
from llmops_nb.core import read_json
from llmops_nb.pretrain import open_corpus
from llmops_nb.runs import read_run, read_wandb_run
from llmops_nb.train import last_checkpoint

TINY = [("vocab_size", "400"), ("n_layer", "2"), ("d_model", "64"), ("n_head", "2"), ("block_size", "32"), ("batch_size", "8"),
        ("lr", "0.003"), ("eval_steps", "20"), ("save_steps", "4"), ("max_steps", "40")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return job_env(tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("cache"), LLMOPS_THREADS="1")  # the in-process reference runs on 1 thread too


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    r, d = random.Random(1), tmp_path_factory.mktemp("docs")
    words = ["".join(r.choice(["ka", "te", "lo", "bre", "und", "ri", "sto", "mex", "par"]) for _ in range(r.randint(1, 4))) for _ in range(200)]
    for i in range(40):
        (d / f"doc{i:02d}.txt").write_text(" ".join(r.choice(words) for _ in range(80)) + ".\n")
    return d


@pytest.fixture(scope="module")
def first(env, docs):
    out = llmops_run("pretrain", ("dataset", str(docs)), *TINY, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return read_run(run_dir_of(out))


def test_run_record_has_the_model_its_card_and_lineage(first, docs):
    rec, m = first, first.metrics
    assert rec.status == "completed" and {"model", "loss_plot", "model_card"} <= set(rec.lineage["outputs"])
    assert rec.lineage["inputs"]["corpus"]["digest"] == open_corpus(docs).digest
    card = read_json(rec.dir / "pretrain" / "model" / "model_card.json")
    assert card["run_id"] == rec.id and card["corpus_digest"] == open_corpus(docs).digest and card["metrics"]["steps"] == 40
    assert m["steps"] == 40 and m["eval_loss"] < m["eval_loss_start"] and m["eval/perplexity"] > 1
    assert read_wandb_run(rec.dir)["summary"]["eval_loss"] == pytest.approx(m["eval_loss"])
    assert (rec.dir / "pretrain" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_gives_the_uninterrupted_weights(env, docs, first):
    "The same job as `first`, killed (job and kernel) right after a checkpoint, then resumed: it ends with `first`'s weights."
    args = [LLMOPS, "run", "pretrain", "-p", "dataset", str(docs)] + sum((["-p", k, v] for k, v in TINY), [])
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs, t0, killed = Path(env["LLMOPS_HOME"]) / "runs" / "pretrain", time.time(), None
    while time.time() - t0 < 300 and proc.poll() is None:
        jobs = [d for d in runs.glob("*/pretrain/checkpoints") if d.parents[1] != first.dir]
        if jobs and last_checkpoint(jobs[0], clean=False) is not None:   # a complete checkpoint is on disk
            os.killpg(proc.pid, signal.SIGKILL)                   # the job and its kernel, mid-training
            killed = jobs[0].parents[1]
            break
        time.sleep(0.01)
    proc.wait(30)
    assert killed is not None, "no checkpoint appeared before the run ended"
    assert not (killed / "pretrain" / "model").exists() and read_run(killed).status == "running"
    out = llmops_run("pretrain", ("dataset", str(docs)), *TINY, ("resume_from", killed.name), env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rec = read_run(run_dir_of(out))
    card = read_json(killed / "pretrain" / "model" / "model_card.json")
    assert card["resumed_from"].startswith("checkpoint-") and card["run_id"] == rec.id and card["metrics"]["steps"] == 40
    a, b = load_file(first.dir / "pretrain" / "model" / "model.safetensors"), load_file(killed / "pretrain" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a) and rec.metrics["eval_loss"] == first.metrics["eval_loss"]


def test_bad_input_fails_fast_with_clear_errors(env):
    out = llmops_run("pretrain", ("block_size", "4096"), env=env)
    assert out.returncode == 2 and "parameter 'block_size' must be >= 8 and <= context (1024), got 4096" in out.stderr
    out = llmops_run("pretrain", ("lr", "fast"), env=env)
    assert out.returncode == 2 and "lr" in out.stderr and "'auto' | float" in out.stderr
    out = llmops_run("pretrain", ("seed", "1"), ("n_head", "3"), env=env)
    assert out.returncode == 2 and "parameter 'n_head' must be a divisor of d_model leaving an even head size, got 3" in out.stderr
