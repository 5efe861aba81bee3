"The release runbook with `tracker: mlflow` (set in the environment): the job's run and the release it registers, read back with MLflow's own client."
import json, shutil
import pytest
from conftest import llmops_run, run_dir_of, job_env

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install -e '.[dev]')")
from mlflow import MlflowClient
from llmops_nb.core import Settings, write_json
from llmops_nb.gates import gate
from llmops_nb.pipeline import release_spec, spec_digest
from llmops_nb.runs import read_run, start_run
from llmops_nb.suites import load_suite, run_suite

SUITE = load_suite([{"id": f"q{i}", "question": f"q{i}?", "answer": "yes"} for i in range(10)], name="toy")
RULES = {"rules": [{"metric": "exact_match", "min": 0.6}]}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    "An MLflow SQLite store with its tables made, once (MLflow's migrations take seconds; a copy does not)."
    db = tmp_path_factory.mktemp("mlflow") / "mlruns.db"
    from llmops_nb.mlflow_tracker import import_mlflow
    import_mlflow()
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments(max_results=1)
    return db


def test_release_job_tracked_in_mlflow(home, tiny_model, empty_store, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(empty_store, home / "mlruns.db")
    settings = Settings(home=home, tracker="none")
    spec = release_spec(str(tiny_model), index=None, settings=settings, max_new_tokens=16)
    ev = start_run("evaluate", {}, settings)                           # an evaluate run record whose gate passed
    res = run_suite(lambda q: "yes", SUITE, metrics=["exact_match"])
    res.save(ev.dir / "eval")
    write_json(ev.dir / "release.json", {"digest": spec_digest(spec), "spec": spec})
    write_json(ev.dir / "gate.json", gate(res, RULES).to_dict())
    ev.finish()
    env = job_env(home, LLMOPS_TRACKER="mlflow")
    env.pop("MLFLOW_TRACKING_URI", None)
    out = llmops_run("release", ("eval_run", ev.id), ("note", "token sk-proj-abcdefghijklmnopqrstuvwxyz0123"), env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rec = read_run(run_dir_of(out))
    tracked = rec.lineage["tracker"]
    assert tracked["kind"] == "mlflow" and tracked["tracking_uri"] == f"sqlite:///{home.resolve() / 'mlruns.db'}"
    c = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns.db'}", registry_uri=f"sqlite:///{home / 'mlruns.db'}")
    r = c.get_run(tracked["id"])
    assert (r.info.status, r.info.run_name, r.data.tags["llmops.runbook"]) == ("FINISHED", rec.id, "release")
    assert r.data.params["eval_run"] == ev.id and r.data.params["to"] == '["staging", "production"]'
    assert "sk-proj" not in r.data.params["note"] and r.data.tags["llmops.parents"] == ev.id
    assert (r.data.metrics["promoted"], r.data.metrics["moves"], r.data.metrics["refused"]) == (1.0, 2.0, 0.0)
    for alias in ("staging", "production"):
        assert c.get_model_version_by_alias("llmops-nb", alias).tags["llmops.digest"] == spec_digest(spec)
    mv = c.get_model_version_by_alias("llmops-nb", "production")
    assert [f.path for f in c.list_artifacts(mv.run_id, "release")] == ["release/release.json"]
    assert c.search_prompt_versions("rag")[0].tags["llmops.digest"] == spec["prompt"]["digest"]
    assert json.loads((rec.dir / "release.json").read_text())["aliases"] == {"production": mv.tags["llmops.release"],
                                                                                  "staging": mv.tags["llmops.release"]}
