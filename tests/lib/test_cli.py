"The llmops command: runbook listing, typed parameter validation, run records, secrets, failures, doctor."
import json, os, subprocess, time
from pathlib import Path
import pytest
from conftest import LLMOPS, ROOT, make_runbook
from llmops_nb.runs import read_run, read_wandb_run


def llmops(*args, env=None, timeout=600):
    return subprocess.run([LLMOPS, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture
def books(home):
    "A runbooks folder with a typed runbook, a failing one and a profile."
    d = home / "runbooks"
    make_runbook(d / "toy.ipynb",
                 'steps = 2  # number of steps\nlr: float = 0.1  # learning rate\nmode: Literal["a", "b"] = "a"  # mode\n'
                 'api_token = ""  # secret token, passed by reference\n',
                 "from llmops_nb.core import resolve_secret\nfrom llmops_nb.runs import start_run\n"
                 "run = start_run('toy', dict(steps=steps, lr=lr, mode=mode, api_token=api_token))\n"
                 "assert resolve_secret(api_token) in ('', 'tok-SECRET-42'), 'secret not resolved'\n"
                 "print('token length', len(resolve_secret(api_token) or ''))\n"
                 "for i in range(steps): run.log({'loss': lr / (i + 1)}, step=i)\n"
                 "run.finish()")
    make_runbook(d / "fails.ipynb", "n = 1  # rows\n", "from llmops_nb.runs import start_run\nrun = start_run('fails')\n"
                 "raise ValueError(f'row {n} is malformed')")
    (d / "profiles").mkdir()
    (d / "profiles" / "small.yaml").write_text("settings:\n  seed: 3\nparams:\n  toy: {steps: 3}\n")
    return d


def test_runbooks_lists_parameters(books):
    out = llmops("runbooks")
    assert out.returncode == 0, out.stderr
    assert "toy: Test runbook." in out.stdout
    assert "lr" in out.stdout and "float" in out.stdout and "# learning rate" in out.stdout


def test_unknown_and_ill_typed_parameters_refused_fast(books, home):
    for args, msg in [(["-p", "stpes", "3"], "unknown parameter 'stpes'; valid parameters: steps, lr, mode, api_token"),
                      (["-p", "steps", "three"], "-p 'steps': expected int, got str 'three'"),
                      (["-p", "mode", "c"], "expected 'a' | 'b'")]:
        t = time.time()
        out = llmops("run", "toy", *args)
        assert out.returncode == 2, out.stderr
        assert msg in out.stderr
        assert time.time() - t < 20
    bad = home / "bad.yaml"
    bad.write_text("lr: fast\n")
    out = llmops("run", "toy", "-f", str(bad))
    assert out.returncode == 2 and "bad.yaml 'lr': expected float" in out.stderr
    assert llmops("run", "nosuch").returncode == 2
    assert llmops("run", "toy", "-f", str(home / "missing.yaml")).returncode == 2
    assert not (home / "runs").exists()        # nothing ran, no run folder


def test_run_layers_profile_file_and_p_and_keeps_secret_out(books, home):
    pf = home / "p.yaml"
    pf.write_text("lr: 0.5\n")
    out = llmops("run", "toy", "--profile", "small", "-f", str(pf), "-p", "mode", "b", "-p", "api_token", "tok-SECRET-42")
    assert out.returncode == 0, out.stderr
    run_dir = Path(out.stdout.split(": ", 1)[1].splitlines()[0])
    rec = read_run(run_dir)
    assert rec.status == "completed"
    assert (rec.params["steps"], rec.params["lr"], rec.params["mode"]) == (3, 0.5, "b")
    assert rec.params["api_token"] == "env:LLMOPS_SECRET_API_TOKEN"
    assert rec.metrics["loss"] == pytest.approx(0.5 / 3)
    nb = rec.notebook.read_text()
    assert "token length 13" in nb                                  # the job saw the secret...
    for f in run_dir.rglob("*"):                                    # ...which is in no file of the record, W&B included
        if f.is_file():
            assert b"tok-SECRET-42" not in f.read_bytes(), f
    assert read_wandb_run(run_dir)["config"]["api_token"] == "env:LLMOPS_SECRET_API_TOKEN"
    shown = llmops("show", str(run_dir))
    assert shown.returncode == 0 and rec.id in shown.stdout and '"lr": 0.5' in shown.stdout


def test_failing_cell_gives_nonzero_exit_and_partial_notebook(books):
    out = llmops("run", "fails", "-p", "n", "7")
    assert out.returncode == 1
    assert "ValueError: row 7 is malformed" in out.stderr
    nb = Path(out.stderr.split("partial notebook: ")[1].splitlines()[0])
    assert nb.exists() and "row 7 is malformed" in nb.read_text()
    assert read_run(nb.parent).status == "failed"


def test_config_error_inside_a_runbook_is_bad_input(books, home):
    "A job config that refuses a value inside the runbook exits 2 with its message, like a bad -p; the record says failed."
    make_runbook(books / "picky.ipynb", "lr = 0.1  # learning rate\n",
                 "from llmops_nb.core import ConfigError\nfrom llmops_nb.runs import start_run\nrun = start_run('picky')\n"
                 "if lr <= 0:\n    raise ConfigError(f\"parameter 'lr' must be > 0, got {lr}\")\nrun.finish()")
    out = llmops("run", "picky", "-p", "lr", "-1")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "error: parameter 'lr' must be > 0, got -1.0"
    (d,) = list((home / "runs" / "picky").iterdir())
    assert read_run(d).status == "failed" and (d / "notebook.ipynb").exists()
    assert llmops("run", "picky", "-p", "lr", "0.5").returncode == 0


def test_dry_run_validates_without_running(books, home):
    out = llmops("run", "toy", "--dry-run", "-p", "steps", "9", "-p", "api_token", "abc-secret-value")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["steps"] == 9 and "abc-secret-value" not in out.stdout
    assert not (home / "runs").exists()


def test_parameter_values_may_start_with_a_dash(books, home):
    out = llmops("run", "toy", "--dry-run", "-p", "steps", "-3", "-p", "api_token", "-abc-secret-value")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["steps"] == -3 and "abc-secret-value" not in out.stdout


def test_doctor_runbook_writes_complete_record(home, tmp_path):
    fake_home = tmp_path / "user-home"
    fake_home.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") or k == "WANDB_MODE"}
    out = subprocess.run([LLMOPS, "run", "doctor", "-p", "load_models", "false"], capture_output=True, text=True,
                         env={**clean, "HOME": str(fake_home)}, timeout=600)
    assert out.returncode == 0, out.stderr
    runs = list((home / "runs" / "doctor").iterdir())
    assert len(runs) == 1
    rec = read_run(runs[0])
    assert rec.status == "completed" and rec.params == {"load_models": False, "min_free_gb": 5.0, "fail_on_error": True}
    assert rec.metrics["checks_failed"] == 0 and rec.metrics["checks_ok"] >= 5
    for key in ("run_id", "code", "host", "inputs", "outputs", "parents", "notebook", "tracker", "started", "finished"):
        assert key in rec.lineage, key
    assert rec.lineage["outputs"]["doctor_report"]["path"] == "doctor.json"
    assert rec.notebook and json.loads(rec.notebook.read_text())["cells"]
    wb = read_wandb_run(rec.dir)
    assert wb["state"] == "finished" and wb["summary"]["checks_failed"] == 0
    leaked = [p for p in fake_home.rglob("*") if "wandb" in p.name.lower()]
    assert not leaked, f"W&B wrote into $HOME: {leaked[:5]}"


def test_doctor_command_json():
    out = llmops("doctor", "--no-load", "--json")
    assert out.returncode == 0, out.stderr
    checks = {c["check"]: c for c in json.loads(out.stdout)}
    assert {"python", "torch", "faiss", "wandb", "disk", "model:smollm2-135m-instruct", "model:all-minilm-l6-v2"} <= set(checks)
    assert checks["torch"]["status"] == "ok"


@pytest.mark.serial
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_run_is_closed_and_scrubbed(books, home, sig):
    "Ctrl-C, or a scheduler's SIGTERM, mid-run: exit 130, the record says 'interrupted', no unscrubbed partial notebook is left."
    import signal
    make_runbook(books / "slow.ipynb", 'api_token = ""  # secret\n',
                 "from llmops_nb.core import resolve_secret\nfrom llmops_nb.runs import start_run\nrun = start_run('slow')\n"
                 "print('token', resolve_secret(api_token))\nimport time; time.sleep(120)")
    # as from a terminal: a shell's background job (`make test &`, nohup) starts with SIGINT ignored, and so would llmops
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    p = subprocess.Popen([LLMOPS, "run", "slow", "-p", "api_token", "sk-interruptedsecret0123456789"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=os.environ.copy(), preexec_fn=default_sigint)
    runs = home / "runs" / "slow"
    deadline = time.time() + 120
    started = lambda: any("tracker" in json.loads(f.read_text()) for f in runs.glob("*/lineage.json"))  # start_run ran
    while time.time() < deadline and not (any(runs.glob("*/.executing.ipynb")) and started()): time.sleep(0.2)
    assert any(runs.glob("*/.executing.ipynb")) and started(), "the run never reached its sleeping cell"
    time.sleep(1)                                                  # inside the sleeping cell, however loaded the machine
    p.send_signal(getattr(signal, sig))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    (d,) = list(runs.iterdir())
    assert read_run(d).status == "interrupted" and not (d / ".executing.ipynb").exists()
    assert (d / "notebook.ipynb").exists()
    assert not any(b"interruptedsecret" in f.read_bytes() for f in d.rglob("*") if f.is_file())


def test_serve_engine_flag_is_checked(home):
    out = llmops("serve", "--engine", "tgi", env={"LLMOPS_API_KEYS": "engine-flag-key-0123456789abcdef"})
    assert out.returncode == 2 and "invalid choice: 'tgi'" in out.stderr and "'hf', 'vllm'" in out.stderr
    out = llmops("serve", "--engine", "vllm", env={"LLMOPS_API_KEYS": "engine-flag-key-0123456789abcdef", "LLMOPS_VLLM_PYTHON": str(home / "none")})
    assert out.returncode == 2 and f"vllm_python: {home / 'none'} does not exist; run `make vllm-check`" in out.stderr, out.stderr
