"The managed vLLM engine: its command, bad inputs, supervision against a stand-in server, `llmops serve --engine vllm`, and (slow) a real promotion."
import json, os, signal, subprocess, sys, textwrap, threading, time
from pathlib import Path
from types import SimpleNamespace
import httpx
import pytest
from conftest import LLMOPS, ROOT
from llmops_nb.core import ConfigError, Settings
from llmops_nb.engine import EngineError, VLLMEngine, check_vllm_python
from llmops_nb.testing import fake_vllm
from llmops_nb.serve import ReleaseRouter

KEY = "engine-test-key-0123456789abcdef"


@pytest.fixture
def fake(tmp_path):
    "Keyword arguments that make a VLLMEngine run the stand-in server (any Python serves as vllm_python)."
    return {"python": sys.executable, "env": {"PYTHONPATH": str(fake_vllm(tmp_path / "fake"))}, "settings": Settings(home=tmp_path),
            "start_timeout": 30, "backoff": 0.1}


def adapter(folder: Path, r: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "peft_type": "LORA"}))
    return folder


def wait_for(cond, timeout=20.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond(): return True
        time.sleep(0.05)
    return False


def test_command_and_environment(tiny_model, tmp_path):
    eng = VLLMEngine(tiny_model, port=8123, python="/opt/vllm/bin/python", kv_cache_gib=1.5, settings=Settings(home=tmp_path),
                     extra_args=["--enforce-eager"])
    cmd = eng.command()
    assert cmd[:3] == ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags["--model"] == str(tiny_model) and flags["--served-model-name"] == "tiny" and flags["--port"] == "8123"
    for flag, v in (("--max-model-len", "2048"), ("--max-lora-rank", "16"), ("--dtype", "bfloat16"), ("--host", "127.0.0.1")):
        assert cmd[cmd.index(flag) + 1] == v
    assert "--enable-lora" in cmd and cmd[-1] == "--enforce-eager"
    env = eng.environ()
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["VLLM_CPU_KVCACHE_SPACE"] == "1.5" and env["HF_HUB_OFFLINE"] == "1"
    assert eng.base_url == "http://127.0.0.1:8123/v1" and eng.state == "stopped"
    assert VLLMEngine(tiny_model, settings=Settings(home=tmp_path)).python == tmp_path.resolve() / ".venv-vllm" / "bin" / "python"
    assert VLLMEngine(tiny_model, settings=Settings(home=tmp_path, vllm_python=Path("/x/bin/python"))).python == Path("/x/bin/python")


@pytest.mark.parametrize("port", [0, 70000, "80", True, 8.5])
def test_bad_port_is_refused(tiny_model, tmp_path, port):
    with pytest.raises(ValueError, match="port must be an int between 1 and 65535"): VLLMEngine(tiny_model, port=port, settings=Settings(home=tmp_path))


def test_missing_or_broken_interpreter_fails_at_once(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match=r"vllm_python: .*no-venv/bin/python does not exist; run `make vllm-check`"):
        VLLMEngine(tiny_model, python=tmp_path / "no-venv" / "bin" / "python", settings=Settings(home=tmp_path)).start()
    with pytest.raises(ConfigError, match="has no vllm package"):          # a Python without vLLM
        check_vllm_python(sys.executable, env={"PATH": os.environ["PATH"]})
    broken = tmp_path / "broken-python"; broken.write_text("#!/bin/sh\necho 'bad interpreter' >&2\nexit 7\n"); broken.chmod(0o755)
    with pytest.raises(ConfigError, match="exited with status 7 .*bad interpreter.*make vllm-check"): check_vllm_python(broken)
    t0 = time.time()
    r = subprocess.run([LLMOPS, "serve", "--engine", "vllm", "--vllm-python", str(tmp_path / "nope")], capture_output=True, text=True,
                       env={**os.environ, "LLMOPS_API_KEYS": KEY, "LLMOPS_HOME": str(tmp_path)}, timeout=120)
    assert r.returncode == 2 and "make vllm-check" in r.stderr and "vllm: starting" not in r.stdout, r.stderr
    r = subprocess.run([LLMOPS, "serve", "--engine", "vllm", "--vllm-python", sys.executable, "--endpoint", "http://x:1/v1"], capture_output=True,
                       text=True, env={**os.environ, "LLMOPS_API_KEYS": KEY, "LLMOPS_HOME": str(tmp_path)}, timeout=120)
    assert r.returncode == 2 and "--endpoint names another generator" in r.stderr, r.stderr
    assert time.time() - t0 < 60


def test_start_failures_carry_the_log_tail(tiny_model, fake):
    with pytest.raises(EngineError, match="(?s)exited with status 1 while starting.*failing at start: bad flag"):
        VLLMEngine(tiny_model, **{**fake, "env": {**fake["env"], "FAKE_VLLM_FAIL": "bad flag"}}).start()
    t0 = time.time()
    with pytest.raises(EngineError, match=r"did not answer .*/health within 1 s \(start_timeout\)"):
        VLLMEngine(tiny_model, **{**fake, "env": {**fake["env"], "FAKE_VLLM_DELAY": "60"}, "start_timeout": 1}).start()
    assert time.time() - t0 < 20                                          # the slow server was killed, not waited for
    with VLLMEngine(tiny_model, **fake) as eng:                           # a taken port: said before anything starts
        with pytest.raises(ConfigError, match=f"port {eng.port} on 127.0.0.1 is not free"): VLLMEngine(tiny_model, port=eng.port, **fake).start()


def test_adapters_load_idempotently_and_bad_ones_are_refused(tiny_model, fake, tmp_path):
    a1, a2 = adapter(tmp_path / "a1"), adapter(tmp_path / "a2")
    with VLLMEngine(tiny_model, **fake) as eng:
        assert eng.load_adapter("v1", a1) is True and eng.load_adapter("v1", a1) is False
        assert eng.load_adapter("v1", a2) is True and eng.adapters == {"v1": str(a2.resolve())}   # same name, another folder: replaced
        assert eng.models() == ["tiny", "v1"]
        with pytest.raises(ConfigError, match="is not a LoRA adapter folder"): eng.load_adapter("v2", tmp_path / "missing")
        with pytest.raises(ConfigError, match="rank 64 is above the engine's max_lora_rank 16"): eng.load_adapter("v3", adapter(tmp_path / "big", r=64))
        with pytest.raises(ValueError, match="adapter name"): eng.load_adapter("has space", a1)
        assert eng.unload_adapter("v1") is True and eng.unload_adapter("v1") is False and eng.models() == ["tiny"]


def test_crash_restarts_and_reloads_adapters(tiny_model, fake, tmp_path):
    a1 = adapter(tmp_path / "a1")
    with VLLMEngine(tiny_model, max_restarts=2, **fake) as eng:
        gen = eng.generator_for({"base_model": {"ref": str(tiny_model)}, "adapter": {"path": str(a1), "digest": "c" * 64}})
        first = eng.pid
        os.killpg(first, signal.SIGKILL)                                  # a crash behind the engine's back
        assert wait_for(lambda: eng.pid != first and eng.state == "running"), (eng.state, eng.error)
        assert eng.restarts == 1 and eng.models() == ["tiny", "adapter-cccccccccccc"]
        assert gen.generate([{"role": "user", "content": "still there?"}]).text == "[adapter-cccccccccccc] still there?"
        second = eng.pid
        os.killpg(second, signal.SIGKILL)
        assert wait_for(lambda: eng.pid != second and eng.state == "running")
        third = eng.pid
        client = _health_client(gen, eng)
        h = client.get("/healthz", headers={"Authorization": f"Bearer {HEALTH_KEY}"})
        assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["engine"]["state"] == "running"
        assert h.json()["engine"]["restarts"] == 2 and h.json()["engine"]["adapters"] == ["adapter-cccccccccccc"]
        os.killpg(third, signal.SIGKILL)                                  # a third crash: past max_restarts=2
        assert wait_for(lambda: eng.state == "failed") and "gave up after 2 restarts" in eng.error
        assert not eng.healthy()
        assert client.get("/healthz").status_code == 503                  # a load balancer takes the server out
        h = client.get("/healthz", headers={"Authorization": f"Bearer {HEALTH_KEY}"})
        assert h.status_code == 503 and h.json()["status"] == "not-ready" and "gave up" in h.json()["engine"]["error"]
    assert eng.state == "failed"


HEALTH_KEY = "engine-health-key-0123456789abcdef"

def _health_client(gen, eng):
    "A server over a pipeline that generates on `eng` (its engine attribute, as engine_pipeline sets it)."
    from fastapi.testclient import TestClient
    from llmops_nb.pipeline import RAGPipeline
    from llmops_nb.serve import create_app
    class Store:
        def search(self, *a, **k): return []
    pipe = RAGPipeline(Store(), gen); pipe.engine = eng
    client = TestClient(create_app(pipe, store=None, keys=[HEALTH_KEY])); client.__enter__()
    return client


def test_stop_ends_the_process_group_and_a_killed_parent_takes_vllm_with_it(tiny_model, fake, tmp_path):
    with VLLMEngine(tiny_model, **fake) as eng: pid = eng.pid
    assert eng.state == "stopped" and wait_for(lambda: not Path(f"/proc/{pid}").exists(), 5)
    if not sys.platform.startswith("linux"): pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from llmops_nb.core import Settings
        from llmops_nb.engine import VLLMEngine
        eng = VLLMEngine({str(tiny_model)!r}, python=sys.executable, env={fake['env']!r}, settings=Settings(home={str(tmp_path)!r})).start()
        print(eng.pid, flush=True); time.sleep(120)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert Path(f"/proc/{child}").exists()
        parent.kill(); parent.wait(10)                                    # SIGKILL: no atexit, no cleanup in the parent
        assert wait_for(lambda: not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text(), 10), "vLLM outlived its parent"
    finally:
        if parent.poll() is None: parent.kill()


def test_router_promotion_loads_the_new_adapter_without_a_restart(tiny_model, fake, tmp_path):
    "ReleaseRouter(generator_for=engine.generator_for): moving the alias loads the new release's adapter at run time."
    base = {"ref": str(tiny_model), "digest": None}
    rels = {v: SimpleNamespace(version=v, digest=v * 8, spec={"base_model": base, "adapter": {"path": str(adapter(tmp_path / v)), "digest": v * 8}})
            for v in ("aaaa", "bbbb")}
    rels["base"] = SimpleNamespace(version="base", digest="base" * 8, spec={"base_model": base, "adapter": None})
    aliases = {"production": "aaaa"}
    registry = SimpleNamespace(get=lambda ref: rels[aliases.get(ref, ref)], aliases=lambda: dict(aliases),
                               alias_digest=lambda a: rels[aliases[a]].digest)
    class Pipe:
        def __init__(self, spec, settings=None, generator=None): self.generator = generator
        def answer(self, q): return self.generator.generate([{"role": "user", "content": q}]).text
    with VLLMEngine(tiny_model, **fake) as eng:
        router = ReleaseRouter(registry, "production", builder=Pipe, generator_for=eng.generator_for)
        assert router.stable.pipeline.answer("hi") == "[aaaa] hi"
        pid = eng.pid
        aliases["production"] = "bbbb"; assert router.check() == ["stable"]
        assert router.stable.pipeline.answer("hi") == "[bbbb] hi" and eng.pid == pid and eng.restarts == 0
        assert sorted(eng.adapters) == ["aaaa", "bbbb"]                   # the old one stays for requests still on it
        aliases["production"] = "base"; router.check()
        assert router.stable.pipeline.answer("hi") == "[tiny] hi"
        other = SimpleNamespace(version="cccc", digest="c" * 32, spec={"base_model": {"ref": "smollm2-135m-instruct"}, "adapter": None})
        rels["cccc"] = other; aliases["production"] = "cccc"; assert router.check() == []   # another base model: refused, still serving
        assert "one engine serves one base model" in router.errors["stable"]["error"] and router.stable.version == "base"


def test_llmops_serve_engine_vllm_end_to_end_with_the_stand_in(tiny_model, tmp_path):
    "`llmops serve --engine vllm` without a release: the adapter is loaded as a LoRA module, answers come from the engine, vLLM stops with the server."
    from test_serve_cli import Server, free_port
    ad = adapter(tmp_path / "ad")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(fake_vllm(tmp_path / "fake")), "LLMOPS_API_KEYS": KEY, "LLMOPS_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    srv = Server(tmp_path, ["--engine", "vllm", "--vllm-python", sys.executable, "--model", str(tiny_model), "--adapter", str(ad),
                            "--port", str(port), "--no-store", "--rate-limit", "0"], env)
    url = f"http://127.0.0.1:{port}"
    try:
        srv.wait_healthy(url, timeout=120)
        r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "How long is the return window?"}]},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].startswith("[adapter-"), r.json()
        out = srv.output()
        vpid = int(out.split("vllm: ready (pid ")[1].split(")")[0])
        assert "engine: vllm" in out and Path(f"/proc/{vpid}").exists()
    finally:
        rc = srv.stop()
    assert rc == 0 and f"vllm: stopped (pid {vpid})" in srv.output(), srv.output()[-2000:]   # SIGTERM: vLLM stopped in order, then a clean exit
    assert not Path(f"/proc/{vpid}").exists(), "vLLM outlived llmops serve"


VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PY.exists(), reason="no .venv-vllm (make vllm-check creates it)")
def test_real_vllm_promotion_switches_answers_without_a_failed_request(tmp_path):
    "The packaged SmolLM2 on real vLLM: requests flow while the alias moves from the base model to an adapter; none fails."
    from llmops_nb.models import packaged_base
    base_dir = packaged_base("smollm2-135m-instruct", Settings(home=ROOT))  # the converted folder the project already caches
    ad = tmp_path / "ad"; ad.mkdir()
    cfg = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": str(base_dir),
           "task_type": "CAUSAL_LM", "bias": "none", "lora_dropout": 0.0, "fan_in_fan_out": False, "inference_mode": True}
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    import torch
    from safetensors.torch import save_file
    hidden, layers = 576, 30                                              # SmolLM2-135M; zero B matrices: the adapter answers like the base
    w = {}
    for i in range(layers):
        for m, out in (("q_proj", hidden), ("v_proj", 192)):
            w[f"base_model.model.model.layers.{i}.self_attn.{m}.lora_A.weight"] = torch.randn(8, hidden) * 0.01
            w[f"base_model.model.model.layers.{i}.self_attn.{m}.lora_B.weight"] = torch.zeros(out, 8)
    save_file(w, str(ad / "adapter_model.safetensors"))
    base = {"ref": str(base_dir), "digest": None}
    rels = {"base": SimpleNamespace(version="base", digest="b" * 32, spec={"base_model": base, "adapter": None}),
            "tuned": SimpleNamespace(version="tuned", digest="t" * 32, spec={"base_model": base, "adapter": {"path": str(ad), "digest": "t" * 64}})}
    aliases = {"production": "base"}
    registry = SimpleNamespace(get=lambda ref: rels[aliases.get(ref, ref)], aliases=lambda: dict(aliases), alias_digest=lambda a: rels[aliases[a]].digest)
    class Pipe:
        def __init__(self, spec, settings=None, generator=None): self.generator = generator
        def answer(self, q): return self.generator.generate([{"role": "user", "content": q}], max_new_tokens=8)
    with VLLMEngine(base_dir, python=VLLM_PY, kv_cache_gib=1, settings=Settings(home=tmp_path)) as eng:
        router = ReleaseRouter(registry, "production", builder=Pipe, generator_for=eng.generator_for)
        models, failures, stop = [], [], threading.Event()
        def client():
            while not stop.is_set():
                try: models.append(router.pick("r").pipeline.answer("Say hi.").model)
                except Exception as e: failures.append(repr(e))
        ts = [threading.Thread(target=client) for _ in range(2)]
        for t in ts: t.start()
        assert wait_for(lambda: len(models) >= 3, 120)
        aliases["production"] = "tuned"; assert router.check() == ["stable"]
        n = len(models)
        assert wait_for(lambda: len(models) >= n + 4, 120)
        stop.set()
        for t in ts: t.join(60)
        pid = eng.pid
    assert not failures, failures[:3]
    assert models[0] == "smollm2-135m-instruct" and models[-1] == "tuned" and eng.restarts == 0
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10)


def test_doctor_reports_the_vllm_environment(tmp_path):
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path)}
    out = subprocess.run([LLMOPS, "doctor", "--no-load", "--json"], capture_output=True, text=True, env=env, timeout=300)
    vllm = {c["check"]: c for c in json.loads(out.stdout)}["vllm"]
    assert vllm["status"] == "ok" and "engine=hf; no vLLM environment" in vllm["detail"]
    out = subprocess.run([LLMOPS, "doctor", "--no-load", "--json"], capture_output=True, text=True, env={**env, "LLMOPS_ENGINE": "vllm"}, timeout=300)
    vllm = {c["check"]: c for c in json.loads(out.stdout)}["vllm"]
    assert out.returncode == 1 and vllm["status"] == "fail" and "make vllm-check" in vllm["detail"]
