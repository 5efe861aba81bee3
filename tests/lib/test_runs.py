"Run records, secret redaction and W&B offline tracking through the public API."
import json, subprocess, sys, textwrap
import pytest
from llmops_nb.core import load_settings
from llmops_nb.core import REDACTED
from llmops_nb.runs import list_runs, read_run, read_wandb_run, start_run


def test_run_record_roundtrip(home):
    st = load_settings(tracker="none")
    src = home / "data.txt"
    src.write_text("rows")
    with start_run("train", {"lr": 0.1, "db_password": "pw-123456"}, settings=st, parents=("p0",)) as run:
        run.add_input("data", src, run_id="p1")
        run.log({"loss": 2.0}, step=0)
        run.log({"loss": 1.0, "acc": 0.5}, step=1)
        (run.dir / "model.txt").write_text("m")
        run.add_output("model", run.dir / "model.txt")
    rec = read_run(run.dir)
    assert rec.status == "completed" and rec.runbook == "train"
    assert rec.params == {"lr": 0.1, "db_password": REDACTED}
    assert rec.metrics == {"loss": 1.0, "acc": 0.5}
    assert [h["step"] for h in rec.history()] == [0, 1]
    lin = rec.lineage
    assert lin["parents"] == ["p0", "p1"] and lin["outputs"]["model"]["path"] == "model.txt"
    assert lin["code"]["version"] and lin["host"]["python"]
    assert [r.id for r in list_runs(home / "runs")] == [run.id]
    assert "pw-123456" not in "".join(p.read_text() for p in run.dir.iterdir() if p.is_file())


def test_failed_run_and_bad_input(home):
    st = load_settings(tracker="none")
    with pytest.raises(RuntimeError):
        with start_run("job", {}, settings=st) as run:
            raise RuntimeError("disk full")
    assert read_run(run.dir).status == "failed" and "disk full" in read_run(run.dir).lineage["error"]
    with pytest.raises(ValueError, match="runbook name"):
        start_run("../escape", settings=st)
    with pytest.raises(ValueError, match="tracker must be"):
        start_run("job", settings=st, tracker="neptune")
    with pytest.raises(ValueError, match="give a path"):
        start_run("job", settings=st).add_input("x")
    with pytest.raises(FileNotFoundError):
        read_run(home / "nothing-here")


def test_wandb_offline_run_reads_back(home):
    st = load_settings(wandb_mode="offline")
    with start_run("train", {"lr": 0.5, "wandb_token": "never-seen-123"}, settings=st) as run:
        for i in range(3):
            run.log({"loss": 1.0 / (i + 1)}, step=i)
    wb = read_wandb_run(run.dir)
    assert wb["state"] == "finished" and wb["run_id"] == run.id
    assert wb["config"]["lr"] == 0.5 and wb["config"]["wandb_token"] == REDACTED
    assert abs(wb["summary"]["loss"] - 1 / 3) < 1e-9
    assert read_run(run.dir).lineage["tracker"] == {"kind": "wandb", "mode": "offline", "id": run.id, "project": "llmops-nb",
                                                    "dir": str(run.dir)}
    blobs = b"".join(p.read_bytes() for p in run.dir.rglob("*") if p.is_file())
    assert b"never-seen-123" not in blobs
    # W&B kept its folders in the run folder and the project cache, not $HOME
    assert (run.dir / "wandb").is_dir()


def test_wandb_disabled_writes_no_wandb_files(home):
    st = load_settings(wandb_mode="disabled")
    with start_run("train", {"lr": 0.1}, settings=st) as run:
        run.log({"loss": 0.1}, step=0)
    assert read_run(run.dir).lineage["tracker"]["mode"] == "disabled"
    assert not list(run.dir.rglob("*.wandb"))
    assert read_run(run.dir).metrics == {"loss": 0.1}


def test_run_output_resolves_paths_run_ids_and_latest(home):
    from llmops_nb.runs import run_of, run_output, start_run
    from llmops_nb.core import load_settings
    st = load_settings(tracker="none")
    made = []
    for i in range(2):
        with start_run("train_x", {"i": i}, settings=st, tracker="none") as run:
            (run.dir / "adapter").mkdir(); (run.dir / "adapter" / "w.txt").write_text(str(i))
            run.add_output("adapter", run.dir / "adapter")
        made.append(run)
    try:
        with start_run("train_x", {"i": 2}, settings=st, tracker="none") as bad:
            (bad.dir / "adapter").mkdir(); bad.add_output("adapter", bad.dir / "adapter"); raise RuntimeError("crash")
    except RuntimeError:
        pass
    runs_dir = st.path("runs_dir")
    assert run_output("latest", "train_x", "adapter", runs_dir) == made[1].dir / "adapter"   # the failed run is skipped
    assert run_output(made[0].id, "train_x", "adapter", runs_dir) == made[0].dir / "adapter"
    assert run_output(str(made[0].dir), "train_x", "adapter") == made[0].dir / "adapter"
    assert run_output(None, "never_ran", "adapter", runs_dir) is None
    assert run_of(made[0].dir / "adapter" / "w.txt") == made[0].id and run_of(home) is None
    with pytest.raises(FileNotFoundError, match="recorded no output 'index'"):
        run_output(made[0].id, "train_x", "index", runs_dir)
    with pytest.raises(FileNotFoundError, match="not found"):
        run_output("20990101-000000-000000", "train_x", "adapter", runs_dir)


def test_runs_and_core_share_one_secret_table():
    "runs redacts with the canonical redact, name test and patterns of llmops_nb.core (no second table to drift)."
    import llmops_nb.runs as runs
    from llmops_nb import core
    assert runs.redact is core.redact  # run records go through core's redact; runbooks import the rest from core
    assert not hasattr(runs, "resolve_secret") and not hasattr(runs, "REDACTED")
    assert not hasattr(runs, "_SECRET_VALUE") and not hasattr(runs, "_SECRET_NAME")
    for kind, rx, what in core.SECRET_PATTERNS:
        assert isinstance(kind, str) and isinstance(rx, str) and what, kind


class _Recorder:
    "A tracker that keeps what it is sent."
    kind = "recorder"
    def __init__(self): self.logged, self.status = [], None
    def log(self, metrics, step=None): self.logged.append(metrics)
    def finish(self, status="completed"): self.status = status
    def info(self): return {"kind": self.kind}


def _otlp_receiver():
    "A minimal OTLP/HTTP receiver on a free port: (url, list of received spans, server)."
    import http.server, socketserver, threading
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    spans = []
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_POST(self):
            req = ExportTraceServiceRequest(); req.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            spans.extend(s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans)
            self.send_response(200); self.end_headers()
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H); srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}", spans, srv


def test_stages_and_resources_reach_the_record_tracker_and_spans(home, monkeypatch):
    from llmops_nb import telemetry
    url, spans, srv = _otlp_receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    try:
        run = start_run("train", {}, settings=load_settings(tracker="none"))
        run.tracker = rec = _Recorder()
        with run.stage("load_data"): blob = bytearray(48 * 2**20); blob[::4096] = b"x" * len(blob[::4096])
        del blob
        with pytest.raises(RuntimeError):
            with run.stage("train", epochs=1): raise RuntimeError("diverged")
        run.finish("failed", error="RuntimeError: diverged")
        assert telemetry.flush(10)
    finally:
        telemetry.shutdown(); srv.shutdown()
    lin = read_run(run.dir).lineage
    assert [(s["name"], s["status"]) for s in lin["stages"]] == [("load_data", "completed"), ("train", "failed")]
    load = lin["stages"][0]
    assert load["peak_rss_mb"] > 0 and load["seconds"] >= 0        # that the 48 MB spike shows: a fresh process, the test below
    assert lin["resources"]["peak_rss_mb"] >= load["peak_rss_mb"] and lin["resources"]["cpu_s"] > 0
    sent = {k for m in rec.logged for k in m}
    assert {"stage/load_data/seconds", "stage/load_data/peak_rss_mb", "resources/peak_rss_mb", "resources/cpu_s"} <= sent and rec.status == "failed"
    by = {s.name: s for s in spans}
    root = by["run train"]
    assert by["train.load_data"].parent_span_id == root.span_id == by["train.train"].parent_span_id
    assert by["train.load_data"].trace_id == root.trace_id and by["train.train"].status.code == 2 and root.status.code == 2
    attrs = {a.key: a.value for a in by["train.load_data"].attributes}
    assert attrs["llmops.run_id"].string_value == run.id and attrs["llmops.peak_rss_mb"].double_value == load["peak_rss_mb"]


def test_stage_without_export_and_bad_names(home, monkeypatch):
    for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"): monkeypatch.delenv(v, raising=False)
    with start_run("evaluate", {}, settings=load_settings(tracker="none")) as run:
        assert run._span is None
        with run.stage("score") as w: pass
        with pytest.raises(ValueError, match="Run.stage: name must be"):
            with run.stage("score/../x"): pass
    assert w["seconds"] >= 0 and read_run(run.dir).lineage["stages"][0]["name"] == "score"


def test_a_stage_keeps_a_short_memory_spike_in_its_peak():
    "A fresh interpreter (a long test process reuses freed memory, so its resident set would not grow): no reading falls inside the block."
    code = textwrap.dedent("""
        import json
        from llmops_nb.telemetry import ResourceSampler
        s = ResourceSampler(interval=30)
        with s.window() as w:
            b = bytearray(96 * 2**20); b[::4096] = b"x" * len(b[::4096]); del b
        print(json.dumps({"window": w["peak_rss_mb"], "after": s.sample(), "run": s.peak_rss_mb, "hwm": s._hwm}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if not out["hwm"]: pytest.skip("this OS cannot reset the resident-set high-water mark")
    assert out["window"] >= out["after"] + 64 and out["run"] >= out["window"]     # the freed 96 MiB block is in the window's and the run's peak


def test_tables_and_plots_reach_wandb_and_bad_ones_are_refused(home):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with start_run("eval", {}, settings=load_settings(wandb_mode="offline")) as run:
        run.log_table("eval/cases", [{"question": "Warranty?", "correct": True, "hits": [1, 2]}])
        fig, ax = plt.subplots()
        ax.plot([1.0, 0.5])
        run.log_plot("loss", fig)
        fig.savefig(run.dir / "loss.png")
        plt.close(fig)
        run.log_plot("loss_png", run.dir / "loss.png")
        with pytest.raises(TypeError, match="a pandas DataFrame or a list of row dicts"):
            run.log_table("bad", {"question": "not rows"})
        with pytest.raises(FileNotFoundError, match="neither a matplotlib figure nor an image file"):
            run.log_plot("bad", run.dir / "missing.png")
    s = read_wandb_run(run.dir)["summary"]
    assert (s["eval/cases"]["_type"], s["eval/cases"]["nrows"], s["eval/cases"]["ncols"]) == ("table-file", 1, 3)
    assert s["loss"]["_type"] == s["loss_png"]["_type"] == "image-file"
    with start_run("eval", {}, settings=load_settings(tracker="none")) as quiet:     # no tracker: nothing to publish to, still checked
        quiet.log_table("eval/cases", [{"a": 1}])
        with pytest.raises(TypeError):
            quiet.log_table("bad", "a,b")
