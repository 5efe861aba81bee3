"Serving a release through the installed package: alias flips under concurrent load, canary routing, caps, filters, failed builds, SIGHUP."
import hashlib, json, os, signal, socket, subprocess, sys, threading, time
from pathlib import Path
import httpx
import pytest
from fastapi.testclient import TestClient

from llmops_nb.core import ConfigError, load_settings
from llmops_nb.testing import FakeOpenAIServer
from llmops_nb.traffic import LocalServer
from llmops_nb.tracestore import TraceStore
from llmops_nb.pipeline import Answer, Trace
from llmops_nb.releases import ReleaseRegistry
from llmops_nb.serve import ReleaseRouter, canary_bucket, create_app, lora_module, make_app, parse_canary

KEY = "release-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
Q = {"messages": [{"role": "user", "content": "How long is the return window?"}]}


def spec_of(tag: str, max_new_tokens: int = 64, price=None, adapter=None) -> dict:
    "A valid release spec whose content (and so digest) differs by `tag`; the fake builder reads only the tag and settings."
    pin = lambda ref: {"ref": ref, "digest": hashlib.sha256(ref.encode()).hexdigest()}
    return {"schema": 1, "base_model": pin("scripted-1"), "adapter": adapter, "index": None, "prompt": pin("rag@1"),
            "strict_prompt": pin("rag-strict@1"), "policy": {"ref": tag, "config": "default"}, "retrieval": {"k": 2, "mode": "hybrid"},
            "price": price, "generation": {"max_new_tokens": max_new_tokens, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "seed": 0}}


class Tiny:
    "A pipeline that answers 'from TAG' in `delay` seconds, with a trace carrying token counts."
    def __init__(self, tag: str, delay: float = 0.0, gen_kwargs=None):
        self.tag, self.delay, self.gen_kwargs, self.calls = tag, delay, dict(gen_kwargs or {}), []
    def answer(self, question, where=None):
        self.calls.append({"where": where, "gen": dict(self.gen_kwargs)})
        time.sleep(self.delay)
        t = Trace(os.urandom(8).hex(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), status="answered", total_ms=self.delay * 1e3, meta={"policy": self.tag})
        t.step("generate", time.perf_counter(), model="scripted-1", prompt_tokens=100, completion_tokens=20, finish_reason="stop")
        return Answer(f"from {self.tag}", [], {}, t)


def builder(delay=0.0, build_s=0.0, fail_on=("broken",), log=None):
    "A fake `build_pipeline`: a `Tiny` named by the spec's policy ref, built in `build_s` seconds; tags in `fail_on` fail."
    def build(spec, settings=None, generator=None):
        tag = spec["policy"]["ref"]
        if log is not None: log.append((tag, generator))
        time.sleep(build_s)
        if any(tag.startswith(f) for f in fail_on): raise FileNotFoundError(f"adapter of {tag} is gone")
        return Tiny(tag, delay, spec["generation"])
    return build


@pytest.fixture
def reg(tmp_path):
    return ReleaseRegistry(settings=load_settings(home=tmp_path / "home"))


def promote(reg, rel, alias="production"):
    return reg.promote(rel.version, alias, force=True, reason="test") if alias == "production" else reg.promote(rel.version, alias)


def app_for(reg, store=None, **kw):
    return make_app(keys=[KEY], store=store if store is not None else False, settings=reg.settings, registry=reg, rate_limit=None, **kw)


# ---------------------------------------------------------------- the required test: alias flips under load

def test_alias_flips_under_30s_of_concurrent_load_fail_no_request(reg, tmp_path):
    v1, v2 = reg.create(spec_of("v1")), reg.create(spec_of("v2", price={"prompt": 1.0, "completion": 2.0}))
    promote(reg, v1)
    store = TraceStore(tmp_path / "traces.sqlite")
    app = app_for(reg, store, builder=builder(delay=0.02, build_s=0.5), poll_s=0.5, workers=8)
    rows, lock, stop = [], threading.Lock(), threading.Event()

    def client(n):
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as c:
            i = 0
            while not stop.is_set():
                rid, sent = f"c{n}-{i}", time.time(); i += 1
                try:
                    r = c.post("/v1/chat/completions", json=Q, headers={"X-Request-Id": rid})
                    ok, body = r.status_code == 200, r.json()
                except Exception as e: ok, body = False, {"error": repr(e)}
                with lock: rows.append({"rid": rid, "sent": sent, "got": time.time(), "ok": ok, "body": body})

    with LocalServer(app) as srv:
        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(6)]
        t0 = time.time()
        for t in threads: t.start()
        time.sleep(8); promote(reg, v2); flip1 = time.time()                  # promote
        time.sleep(10); reg.rollback("production"); flip2 = time.time()        # and roll back
        time.sleep(max(0.0, 30 - (time.time() - t0)))
        stop.set()
        for t in threads: t.join(30)
        health = httpx.get(srv.url + "/healthz", headers=AUTH).json()

    failed = [r for r in rows if not r["ok"]]
    assert not failed, failed[:3]
    assert len(rows) > 300, len(rows)
    version = lambda r: r["body"]["llmops"]["release"]["version"]
    assert all(r["body"]["choices"][0]["message"]["content"] == f"from {'v1' if version(r) == v1.version else 'v2'}" for r in rows)
    for flip, new in ((flip1, v2.version), (flip2, v1.version)):
        firsts = [r["got"] for r in rows if r["sent"] >= flip and version(r) == new]
        assert firsts and min(firsts) - flip < 10, "the flip was not picked up within 10 s"
        swapped = min(firsts)
        window = [r for r in rows if swapped < r["sent"] and r["sent"] < (flip2 if new == v2.version else float("inf"))]
        assert window and all(version(r) == new for r in window), "a request sent after the swap was answered by the old release"
    assert all(version(r) == v1.version for r in rows if r["got"] < flip1)
    # every trace names the release that answered, and a priced release's traces carry cost
    by_id = {r["body"]["id"]: version(r) for r in rows}
    stored = store.query()
    assert len(stored) == len(rows) and all(s["meta"]["release"]["version"] == by_id[s["trace_id"]] for s in stored)
    assert all(s["meta"]["release"]["alias"] == "production" and s["meta"]["lineage"]["release_alias"] == "production" for s in stored)
    assert all((s["cost_usd"] or 0) > 0 for s in stored if s["meta"]["release"]["version"] == v2.version)
    assert health["releases"]["served"][0]["version"] == v1.version and health["releases"]["errors"] == []


# ---------------------------------------------------------------- canary

def test_canary_routes_a_stable_share_by_request_id(reg, tmp_path):
    v1, v2 = reg.create(spec_of("v1")), reg.create(spec_of("v2"))
    promote(reg, v1); promote(reg, v2, "staging")
    store = TraceStore(tmp_path / "t.sqlite")
    c = TestClient(app_for(reg, store, canary="staging=10", builder=builder()))
    got = {}
    for i in range(400):
        r = c.post("/v1/chat/completions", headers={**AUTH, "X-Request-Id": f"id-{i}"}, json=Q)
        assert r.status_code == 200 and r.headers["x-request-id"] == f"id-{i}"
        got[f"id-{i}"] = r.json()["llmops"]["release"]["alias"]
    assert all((a == "staging") == (canary_bucket(rid) < 10) for rid, a in got.items())
    assert 0.05 < sum(a == "staging" for a in got.values()) / len(got) < 0.15
    again = c.post("/v1/chat/completions", headers={**AUTH, "X-Request-Id": "id-3"}, json=Q).json()
    assert again["llmops"]["release"]["alias"] == got["id-3"]                             # a retried id goes the same way
    rows = store.frame()
    arm = rows.meta.map(lambda m: m["release"]["alias"])
    assert set(arm) == {"production", "staging"} and (rows[arm == "staging"].meta.map(lambda m: m["release"]["version"]) == v2.version).all()
    models = c.get("/v1/models", headers=AUTH).json()["data"]
    assert [(m["id"], m["llmops"]["role"], m["llmops"]["share"]) for m in models] == [
        (f"production@{v1.version}", "stable", 90.0), (f"staging@{v2.version}", "canary", 10.0)]


def test_bad_canary_and_unknown_release_are_clear_errors(reg):
    v1 = reg.create(spec_of("v1")); promote(reg, v1)
    for canary, want in [("staging=abc", "'abc' is not a percentage"), ("=10", "alias before '=' is missing"),
                         ("staging=150", "at most 100, got 150"), ("staging", "ALIAS=PERCENT"), ("staging=0", "above 0")]:
        with pytest.raises(ConfigError, match=want): app_for(reg, canary=canary, builder=builder())
    with pytest.raises(ConfigError, match="'prodution'"): app_for(reg, release="prodution", builder=builder())
    with pytest.raises(ConfigError, match="canary 'staging'"): app_for(reg, canary="staging=10", builder=builder())   # no such alias yet
    broken = reg.create(spec_of("broken"))
    with pytest.raises(ConfigError, match=f"{broken.version}.*cannot be built.*adapter of broken is gone"): app_for(reg, release=broken.version, builder=builder())
    with pytest.raises(ConfigError, match="both say what to serve"): app_for(reg, release="production", model="x", builder=builder())
    assert parse_canary("staging=10") == ("staging", 10.0)


# ---------------------------------------------------------------- a build that fails

def test_a_release_that_fails_to_build_keeps_the_old_one_serving(reg, caplog):
    v1, bad = reg.create(spec_of("v1")), reg.create(spec_of("broken-2"))
    promote(reg, v1)
    app = app_for(reg, builder=builder(), poll_s=60)
    router, c = app.state.llmops.router, TestClient(app)
    promote(reg, bad)
    with caplog.at_level("ERROR", logger="llmops_nb.serve"): assert router.check() == []
    assert "still serving" in caplog.text and bad.digest in caplog.text
    r = c.post("/v1/chat/completions", headers=AUTH, json=Q)
    assert r.status_code == 200 and r.json()["llmops"]["release"]["version"] == v1.version
    err = c.get("/healthz", headers=AUTH).json()["releases"]["errors"]
    assert err[0]["serving"] == v1.version and err[0]["target"] == bad.digest and "adapter of broken-2 is gone" in err[0]["error"]
    assert 'llmops_release_builds_total{alias="production",result="failed"} 1.0' in c.get("/metrics", headers=AUTH).text
    v3 = reg.create(spec_of("v3")); promote(reg, v3)                                   # a good release after the bad one
    assert router.check() == ["stable"] and c.get("/healthz", headers=AUTH).json()["releases"]["errors"] == []
    assert c.post("/v1/chat/completions", headers=AUTH, json=Q).json()["llmops"]["release"]["version"] == v3.version


def test_no_production_alias_serves_the_defaults_with_a_warning(tmp_path, monkeypatch, caplog):
    import llmops_nb.serve as serve_mod
    monkeypatch.setattr(serve_mod, "default_pipeline", lambda *a, **k: Tiny("defaults"))
    with caplog.at_level("WARNING", logger="llmops_nb.serve"):
        app = make_app(keys=[KEY], store=False, settings=load_settings(home=tmp_path / "empty"), builder=builder())
    assert "no 'production' release" in caplog.text and "serving the defaults" in caplog.text
    r = TestClient(app).post("/v1/chat/completions", headers=AUTH, json=Q)
    assert r.json()["choices"][0]["message"]["content"] == "from defaults" and "release" not in r.json()["llmops"]


# ---------------------------------------------------------------- request settings

def test_request_settings_are_honoured_within_the_release_caps(reg):
    v1 = reg.create(spec_of("v1", max_new_tokens=48)); promote(reg, v1)
    app = app_for(reg, builder=builder())
    c, tiny = TestClient(app), app.state.llmops.router.stable.pipeline
    assert c.post("/v1/chat/completions", headers=AUTH, json={**Q, "max_tokens": 4000, "temperature": 0.4}).status_code == 200
    assert tiny.calls[-1]["gen"]["max_new_tokens"] == 48 and tiny.calls[-1]["gen"]["temperature"] == 0.4 and tiny.gen_kwargs["temperature"] == 0.0
    assert c.post("/v1/chat/completions", headers=AUTH, json={**Q, "max_tokens": 10}).status_code == 200 and tiny.calls[-1]["gen"]["max_new_tokens"] == 10
    r = c.post("/v1/chat/completions", headers=AUTH, json={**Q, "temperature": 1.5})
    assert r.status_code == 422 and "temperature" in r.json()["error"]["message"] and "cap of 1" in r.json()["error"]["message"]
    r = c.post("/v1/chat/completions", headers=AUTH, json={**Q, "llmops": {"where": {"department": "hr"}}})
    assert r.status_code == 200 and tiny.calls[-1]["where"] == {"department": "hr"}
    for bad, want in [({"where": "hr"}, "llmops.where: Input should be a valid dictionary"), ({"where": {"d": {"eq": {"x": 1}}}}, "got an object"),
                      ({"filter": {}}, "llmops.filter: Extra inputs"), ({"where": {"d": [[1]]}}, "llmops.where['d'][0]")]:
        r = c.post("/v1/chat/completions", headers=AUTH, json={**Q, "llmops": bad})
        assert r.status_code == 422 and want in r.json()["error"]["message"], (bad, r.text)


# ---------------------------------------------------------------- endpoint (vLLM) and SIGHUP

def test_with_an_endpoint_the_release_version_is_the_model_id(reg):
    ad = reg.create(spec_of("a1", adapter={"path": "/models/adapters/a1", "digest": "a" * 64}))
    plain = reg.create(spec_of("p1"))
    promote(reg, ad); promote(reg, plain, "staging")
    log = []
    with FakeOpenAIServer(reply="ok") as vllm:
        app_for(reg, canary="staging=50", builder=builder(log=log), endpoint=vllm.url, endpoint_model="base-model")
    gens = {tag: g for tag, g in log}
    assert gens["a1"].model == ad.version and gens["p1"].model == "base-model"
    assert lora_module(ad) == f"{ad.version}=/models/adapters/a1" and lora_module(plain) is None


SERVER = '''
import sys, time
from llmops_nb.pipeline import Answer, Trace
from llmops_nb.serve import serve
class Tiny:
    def __init__(self, tag): self.tag, self.gen_kwargs = tag, {{}}
    def answer(self, q, where=None):
        return Answer("from " + self.tag, [], {{}}, Trace(str(time.time_ns()), "", status="answered"))
def build(spec, settings=None, generator=None): return Tiny(spec["policy"]["ref"])
serve(port={port}, keys=["{key}"], store=False, registry={root!r}, builder=build, poll_s=600, rate_limit=None, log_level="warning",
      settings=__import__("llmops_nb.core", fromlist=["x"]).load_settings(home={home!r}))
'''


def test_sighup_swaps_at_once(reg, tmp_path):
    v1, v2 = reg.create(spec_of("v1")), reg.create(spec_of("v2")); promote(reg, v1)
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    code = SERVER.format(port=port, key=KEY, root=str(reg.root), home=str(reg.settings.home))
    p = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url, ask = f"http://127.0.0.1:{port}", lambda: httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers=AUTH, json=Q, timeout=10).json()
    try:
        t0 = time.time()
        while True:
            assert p.poll() is None and time.time() - t0 < 60, p.stdout.read().decode()[-2000:] if p.poll() is not None else "no start"
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200: break
            except httpx.HTTPError: time.sleep(0.2)
        assert ask()["llmops"]["release"]["version"] == v1.version
        promote(reg, v2); time.sleep(1)
        assert ask()["llmops"]["release"]["version"] == v1.version                         # poll_s=600: nothing yet
        p.send_signal(signal.SIGHUP); t1 = time.time()
        while ask()["llmops"]["release"]["version"] != v2.version:
            assert time.time() - t1 < 5, "SIGHUP did not swap within 5 s"
            time.sleep(0.05)
    finally:
        p.terminate(); p.wait(20)
