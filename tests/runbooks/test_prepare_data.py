"The prepare_data runbook end to end through `llmops run`: datasets, report, lineage, W&B artifacts, determinism, bad input."
import json, os, subprocess
from pathlib import Path
import pytest
from conftest import LLMOPS, ROOT, llmops_run, run_dir_of
from llmops_nb.data import load_dataset
from llmops_nb.runs import read_run, read_wandb_run

SAMPLE = ROOT / "data" / "sample"


def run_prepare(*params, timeout=900):
    return llmops_run("prepare_data", *params, timeout=timeout)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    env = {"LLMOPS_HOME": str(home), "WANDB_MODE": "offline"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        out = run_prepare(("inputs", json.dumps([str(SAMPLE)])), ("sft_path", str(SAMPLE / "sft.jsonl")))
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert out.returncode == 0, out.stderr[-3000:]
    return read_run(run_dir_of(out))


def test_prepare_data_writes_versioned_datasets(full_run):
    rec = full_run
    assert rec.status == "completed"
    outs = rec.lineage["outputs"]
    for name in ("chunks", "sft_train", "sft_val", "data_report"):
        assert name in outs, name
    chunks = load_dataset(rec.dir / outs["chunks"]["path"])
    train, val = load_dataset(rec.dir / outs["sft_train"]["path"]), load_dataset(rec.dir / outs["sft_val"]["path"])
    assert len(chunks) > 200 and chunks.manifest["run_id"] == rec.id
    assert len(train) + len(val) >= 200 and 0 < len(val) < len(train)
    assert set(chunks.manifest["sources"]) and all(len(d) == 64 for d in chunks.manifest["sources"].values())
    report = json.loads((rec.dir / "data_report.json").read_text())
    assert report["duplicates"]["exact"] >= 3 and report["duplicates"]["near"] >= 3
    assert report["pii"]["documents_by_type"].get("EMAIL", 0) >= 3
    assert report["digests"]["chunks"] == chunks.digest
    assert {"pdf", "docx"} <= set(report["documents"]["by_type"])                  # the sample's PDF and Word files
    assert report["documents"]["failed"] == len(report["documents"]["failed_files"]) == rec.metrics["documents_failed"]
    assert {s["name"] for s in rec.lineage["stages"]} >= {"documents", "sft"}
    assert (rec.dir / "chunk_tokens.png").stat().st_size > 1000
    # redaction happened: no planted test card number survives in the chunks
    assert not any("4111 1111 1111 1111" in r["text"] for r in chunks.rows)
    # inputs are recorded by digest
    assert any(k.startswith("documents:") for k in rec.lineage["inputs"]) and "sft" in rec.lineage["inputs"]


def test_prepare_data_logs_wandb_artifacts(full_run):
    wb = read_wandb_run(full_run.dir)
    assert wb["state"] == "finished" and wb["summary"]["chunks"] == full_run.metrics["chunks"]
    exe = Path(LLMOPS).parent / "wandb"
    log = subprocess.run([str(exe), "leet", "inspect", "--json", str(next(full_run.dir.rglob("offline-run-*")))],
                         capture_output=True, text=True, timeout=120).stdout
    assert sum('"type":"artifact"' in line for line in log.splitlines()) == 3


def test_same_inputs_same_digests_any_executor_and_bad_input(home):
    small = [("inputs", json.dumps([str(SAMPLE / "policies")])), ("sft_path", str(SAMPLE / "sft.jsonl")), ("pii_mode", "hash")]
    a, b = run_prepare(*small), run_prepare(*small, ("executor", "process"), ("workers", "2"))
    assert a.returncode == 0 and b.returncode == 0, a.stderr[-2000:] + b.stderr[-2000:]
    la, lb = read_run(run_dir_of(a)).lineage["outputs"], read_run(run_dir_of(b)).lineage["outputs"]
    assert {k: v["digest"] for k, v in la.items()} == {k: v["digest"] for k, v in lb.items()}
    assert read_run(run_dir_of(b)).params["executor"] == "process"
    bad = home / "bad"
    bad.mkdir()
    (bad / "ok.md").write_text("# Fine\n\nA fine document.")
    (bad / "rows.jsonl").write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": oops}\n')
    out = run_prepare(("inputs", json.dumps([str(bad)])), ("sft_path", ""))      # a broken file is reported, the rest goes on
    assert out.returncode == 0, out.stderr[-2000:]
    rec = read_run(run_dir_of(out))
    docs = json.loads((rec.dir / "data_report.json").read_text())["documents"]
    assert docs["loaded"] == 1 and docs["failed"] == 1 and docs["failures"] == {"invalid": 1}
    assert "rows.jsonl:2: malformed JSON line" in docs["failed_files"][0]["error"] and rec.metrics["documents_failed"] == 1
    (bad / "ok.md").unlink()
    out = run_prepare(("inputs", json.dumps([str(bad)])), ("sft_path", ""))      # nothing loadable: the run fails, naming why
    assert out.returncode == 1 and "no documents in" in out.stderr and "rows.jsonl:2: malformed JSON line" in out.stderr
    failed = Path(out.stderr.split("run folder: ")[1].splitlines()[0])
    assert read_run(failed).status == "failed" and not (failed / "datasets").exists()
    out = run_prepare(("dedupe_threshold", "2"))                       # PrepareConfig's range check, before any work
    assert out.returncode == 2 and "parameter 'dedupe_threshold' must be in (0, 1]" in out.stderr, out.stderr[-2000:]
    assert run_prepare(("pii_mode", "erase")).returncode == 2          # refused before anything runs
    out = run_prepare(("executor", "spark"))
    assert out.returncode == 2 and "'executor'" in out.stderr and "'ray'" in out.stderr, out.stderr[-2000:]
    assert run_prepare(("workers", "-1")).returncode == 2
