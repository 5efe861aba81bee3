"MLflow as the tracker: a run, a release and a prompt written to a local SQLite store and read back with MLflow's own client; bad settings and unreachable stores."
import json, os, shutil, socket, sys
from pathlib import Path
from types import SimpleNamespace
import pytest

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install -e '.[dev]')")
from mlflow import MlflowClient
from llmops_nb.core import REDACTED, ConfigError, load_settings
from llmops_nb.mlflow_tracker import import_mlflow, log_prompt, log_release, tracking_uri
from llmops_nb.prompts import PromptRegistry
from llmops_nb.runs import read_run, start_run

FAKE_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"      # credential-shaped: must never reach MLflow


def client_of(db: Path) -> MlflowClient:
    "A fresh MLflow client on the SQLite store `db` (not the library's cached one)."
    uri = f"sqlite:///{db}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    "An MLflow SQLite store with its tables made, once: MLflow's migrations take seconds, a copy milliseconds."
    db = tmp_path_factory.mktemp("mlflow") / "mlruns.db"
    import_mlflow()
    client_of(db).search_experiments(max_results=1)
    return db


@pytest.fixture
def store(home, empty_store, monkeypatch) -> Path:
    "The project home's default MLflow store (`<home>/mlruns.db`), tables made; MLFLOW_TRACKING_URI unset."
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Path(shutil.copy(empty_store, home / "mlruns.db"))


def artifacts(c: MlflowClient, run_id: str, path=None) -> list:
    return [x for f in c.list_artifacts(run_id, path) for x in (artifacts(c, run_id, f.path) if f.is_dir else [f.path])]


def test_a_run_reads_back_with_mlflows_client(home, store, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    monkeypatch.chdir(home)
    st = load_settings(tracker="mlflow")
    (home / "data.txt").write_text("rows")
    params = {"lr": 0.01, "lora": {"r": 8, "targets": ["q", "v"]}, "openai_api_key": "abc-123-def", "note": f"key {FAKE_KEY}"}
    with start_run("train", params, settings=st) as run:
        run.add_input("data", home / "data.txt", run_id="20260101-000000-aaaaaa")
        for i, loss in enumerate([2.0, 1.0, 0.5]):
            run.log({"train/loss": loss, "best": "mpnet"}, step=i * 10)
        (run.dir / "adapter").mkdir()
        (run.dir / "adapter" / "adapter_config.json").write_text("{}")
        run.add_output("adapter", run.dir / "adapter", artifact="model")
        run.log_table("cases", [{"question": "Warranty?", "correct": True, "hits": [1, 2]}])
        fig, ax = plt.subplots()
        ax.plot([1, 0.5])
        run.log_plot("loss", fig)
        fig.savefig(run.dir / "loss.png")
        plt.close(fig)
        run.log_plot("loss_file", run.dir / "loss.png")
    lin = read_run(run.dir).lineage["tracker"]
    c = client_of(home / "mlruns.db")
    r = c.get_run(lin["id"])
    assert lin["kind"] == "mlflow" and r.info.status == "FINISHED" and r.info.run_name == run.id
    assert c.get_experiment(r.info.experiment_id).name == "llmops-nb"
    assert r.data.params == {"lr": "0.01", "lora.r": "8", "lora.targets": '["q", "v"]', "openai_api_key": REDACTED, "note": f"key {REDACTED}"}
    assert [(m.step, m.value) for m in c.get_metric_history(r.info.run_id, "train/loss")] == [(0, 2.0), (10, 1.0), (20, 0.5)]
    assert "resources/peak_rss_mb" in r.data.metrics
    tags = r.data.tags
    assert (tags["llmops.runbook"], tags["llmops.run_id"], tags["llmops.parents"]) == ("train", run.id, "20260101-000000-aaaaaa")
    assert tags["llmops.value.best"] == "mpnet" and tags["artifact.adapter.type"] == "model"
    assert tags["artifact.adapter.digest"] == read_run(run.dir).lineage["outputs"]["adapter"]["digest"]
    assert sorted(artifacts(c, r.info.run_id)) == ["model/adapter/adapter_config.json", "plots/loss.png", "plots/loss_file.png", "tables/cases.json"]
    table = json.loads(Path(c.download_artifacts(r.info.run_id, "tables/cases.json", str(home))).read_text())
    assert table["columns"] == ["question", "correct", "hits"] and table["data"][0][2] == "[1, 2]"
    # artifacts live beside the store, not in whatever folder the job ran in
    assert r.info.artifact_uri.startswith((home / "mlartifacts").as_uri())
    assert not (home / "mlruns").exists() and not (home / "mlflow.db").exists()
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert FAKE_KEY.encode() not in stored and b"abc-123-def" not in stored


def test_status_mapping_and_a_continued_run(home, store):
    st = load_settings(tracker="mlflow")
    c = client_of(home / "mlruns.db")
    with pytest.raises(RuntimeError):
        with start_run("job", {"a": 1}, settings=st) as failed:
            raise RuntimeError("disk full")
    killed = start_run("job", {}, settings=st)
    killed.finish("interrupted")
    status = lambda run: c.get_run(read_run(run.dir).lineage["tracker"]["id"]).info.status
    assert (status(failed), status(killed)) == ("FAILED", "KILLED")
    first = start_run("resumable", {"lr": 0.1}, settings=st)             # a job killed mid-way, resumed in the same folder
    first.log({"loss": 1.0}, step=1)
    again = start_run("resumable", {"lr": 0.1, "epochs": 2}, settings=st, run_dir=first.dir)
    again.log({"loss": 0.5}, step=2)
    again.finish()
    rid = read_run(first.dir).lineage["tracker"]["id"]
    assert rid == first.tracker.run_id == again.tracker.run_id
    assert c.get_run(rid).data.params == {"lr": "0.1", "epochs": "2"} and status(again) == "FINISHED"
    assert [(m.step, m.value) for m in c.get_metric_history(rid, "loss")] == [(1, 1.0), (2, 0.5)]


@pytest.mark.slow   # two fresh Python processes importing the package (and torch)
def test_a_process_that_dies_with_the_run_open_closes_it(home, store):
    "An uncaught error ends the MLflow run FAILED; an exit without `finish` ends it KILLED (not RUNNING forever)."
    import subprocess, textwrap
    code = textwrap.dedent("""
        import sys
        from llmops_nb.runs import start_run
        run = start_run("crash", {}, tracker="mlflow")
        print(run.tracker.run_id, flush=True)
        if sys.argv[1] == "raise":
            raise ValueError("boom")
    """)
    env = {**os.environ, "LLMOPS_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-c", code, how], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
             for how in ("raise", "exit")]                               # both at once: each pays the package's import
    ids = [p.communicate(timeout=300)[0].split()[0] for p in procs]
    c = client_of(store)
    assert [c.get_run(i).info.status for i in ids] == ["FAILED", "KILLED"]


def test_tracking_uri_setting_environment_and_default(home, empty_store, monkeypatch, tmp_path_factory):
    other = tmp_path_factory.mktemp("team")
    shutil.copy(empty_store, other / "team.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other / 'team.db'}")
    st = load_settings(tracker="mlflow")
    assert tracking_uri(st) == f"sqlite:///{other / 'team.db'}"
    with start_run("job", {}, settings=st) as run:
        run.log({"x": 1.0})
    assert client_of(other / "team.db").get_run(run.tracker.run_id).data.metrics["x"] == 1.0
    assert not (home / "mlruns.db").exists()
    monkeypatch.setenv("LLMOPS_MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mine.db'}")   # the setting wins over MLflow's variable
    assert tracking_uri(load_settings()) == f"sqlite:///{home / 'mine.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("LLMOPS_MLFLOW_TRACKING_URI")
    assert tracking_uri(load_settings()) == f"sqlite:///{home.resolve() / 'mlruns.db'}"


def test_unknown_tracker_names_the_setting(home):
    with pytest.raises(ConfigError, match="environment variable LLMOPS_TRACKER: expected 'wandb' | 'mlflow' | 'none'"):
        load_settings(env={"LLMOPS_TRACKER": "neptune"})
    (home / "box.yaml").write_text("settings:\n  tracker: mlfow\n")
    with pytest.raises(ConfigError, match=r"box.yaml: setting 'tracker'"):
        load_settings(home / "box.yaml")
    with pytest.raises(ValueError, match="tracker must be one of wandb, mlflow, none"):
        start_run("job", settings=load_settings(tracker="none"), tracker="neptune")


def test_unreachable_or_missing_store_fails_clearly(home, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                                         # closed again: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://ci:{FAKE_KEY}@127.0.0.1:{port}")
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port} \\(MLFLOW_TRACKING_URI\\) is unreachable") as e:
        start_run("job", {}, settings=load_settings(tracker="mlflow"))
    assert FAKE_KEY not in str(e.value)
    st = load_settings(tracker="mlflow", mlflow_tracking_uri=f"sqlite:///{home / 'no' / 'such' / 'x.db'}")
    with pytest.raises(FileNotFoundError, match="setting 'mlflow_tracking_uri' from argument\\): its folder does not exist"):
        start_run("job", {}, settings=st)


def test_missing_mlflow_says_how_to_install(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)                     # what `import mlflow` sees without the package
    with pytest.raises(ImportError, match=r"pip install 'llmops-nb\[mlflow\]'"):
        import_mlflow()
    with pytest.raises(ImportError, match="tracker 'mlflow' needs the mlflow package"):
        start_run("job", {}, settings=load_settings(tracker="mlflow"))


def test_prompt_versions_and_aliases_in_the_prompt_registry(home, store):
    st = load_settings(tracker="mlflow")
    reg = PromptRegistry(home / "prompts")
    chat = [{"role": "system", "content": "Answer from the passages."}, {"role": "user", "content": "{{ question }}"}]
    v1 = reg.register("support", chat, description="first")
    v2 = reg.register("support", [chat[0], {"role": "user", "content": "Q: {{ question }}"}])
    m1 = log_prompt(v1, ["production"], settings=st)
    assert log_prompt(v1, ["staging"], settings=st).version == m1.version        # one MLflow version per digest
    m2 = log_prompt(v2, ["staging"], settings=st)
    c = client_of(home / "mlruns.db")
    got = c.get_prompt_version_by_alias("support", "production")
    assert (got.version, got.template, got.tags["llmops.digest"], got.tags["llmops.ref"]) == (m1.version, chat, v1.digest, v1.ref)
    assert c.get_prompt_version_by_alias("support", "staging").version == m2.version == m1.version + 1
    assert c.load_prompt("prompts:/support@staging").format(question="Warranty?")[1]["content"] == "Q: Warranty?"
    with pytest.raises(TypeError, match="PromptVersion"):
        log_prompt({"name": "support"}, settings=st)
    with pytest.raises(ValueError, match="reserved by MLflow"):
        log_prompt(v1, ["latest"], settings=st)


def test_release_model_versions_aliases_rollback_and_files(home, store, tiny_model):
    from llmops_nb.pipeline import release_spec
    from llmops_nb.releases import ReleaseRegistry
    st = load_settings(tracker="mlflow")
    reg = ReleaseRegistry(settings=st)
    a, b = (reg.create(release_spec(str(tiny_model), index=None, max_new_tokens=n)) for n in (32, 64))
    reg.promote(a.version, "staging")
    reg.promote(b.version, "staging")
    c = client_of(home / "mlruns.db")
    alias = lambda name: c.get_model_version_by_alias("llmops-nb", name)
    assert alias("staging").tags["llmops.digest"] == b.digest
    reg.rollback("staging", reason="b answers worse")
    assert alias("staging").tags["llmops.digest"] == a.digest
    assert len(c.search_model_versions("name = 'llmops-nb'")) == 2
    mv = alias("staging")
    files = artifacts(c, mv.run_id)
    assert files == ["release/release.json"] and mv.source.endswith("/release")
    rec = json.loads(Path(c.download_artifacts(mv.run_id, "release/release.json", str(home))).read_text())
    assert rec["digest"] == a.digest and rec["spec"] == a.spec
    pname, pver = mv.tags["llmops.prompt"].removeprefix("prompts:/").split("/")
    assert c.get_prompt_version(pname, pver).tags["llmops.digest"] == a.spec["prompt"]["digest"]
    assert [h["mlflow"]["aliases"] for h in reg.history("staging")] == [["staging"]] * 3
    # an adapter's config and card go with the release; its weights do not
    ad = home / "adapter"
    ad.mkdir()
    for name, text in [("adapter_config.json", "{}"), ("README.md", "# card"), ("adapter_model.safetensors", "w")]:
        (ad / name).write_text(text)
    fake = SimpleNamespace(version="f" * 12, digest="f" * 64, home=str(home), spec={**a.spec, "adapter": {"path": str(ad), "digest": "d"}})
    out = log_release(fake, ["candidate"], name="support-bot", settings=st)
    assert out["aliases"] == ["candidate"] and out["version"] == 1
    got = artifacts(c, c.get_model_version_by_alias("support-bot", "candidate").run_id)
    assert got == ["release/adapter/README.md", "release/adapter/adapter_config.json", "release/release.json"]


def test_release_registry_fails_before_moving_when_mlflow_is_down(home, tiny_model):
    from llmops_nb.pipeline import release_spec
    from llmops_nb.releases import ReleaseRegistry
    st = load_settings(tracker="mlflow", mlflow_tracking_uri="http://127.0.0.1:9")
    reg = ReleaseRegistry(settings=st)
    with pytest.raises(ConnectionError, match="is unreachable"):
        reg.create(release_spec(str(tiny_model), index=None, max_new_tokens=32))
    assert not reg.root.exists()
