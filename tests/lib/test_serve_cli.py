"`llmops serve` as a user runs it: a real server in a subprocess, keys from the environment or a profile's keys file, refusals."
import os, signal, socket, subprocess, time
from pathlib import Path
import httpx
import pytest
from conftest import LLMOPS
from llmops_nb.tracestore import TraceStore
from llmops_nb.serve import hash_key, key_id

KEY, KEY2 = "cli-test-key-0123456789abcdefgh", "cli-second-key-0123456789abcdef"
Q = {"messages": [{"role": "user", "content": "How long is the return window?"}]}
ANSWER = "Unused items can be returned within 30 days of delivery [1]."
FACTORY = f'''
from llmops_nb.generate import Generation
from llmops_nb.pipeline import RAGPipeline
from llmops_nb.retrieval import Hit

class Store:
    def search(self, q, k=4, where=None, mode="hybrid"):
        return [Hit("returns#0", 0.9, "Unused items can be returned within 30 days of delivery for a full refund.", {{"title": "Returns"}})]

class Gen:
    def info(self): return {{"backend": "scripted", "model": "scripted-1"}}
    def generate(self, msgs, **kw): return Generation({ANSWER!r}, "stop", 20, 10, 0.0, "scripted-1")

def make(): return RAGPipeline(Store(), Gen())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture
def env(home):
    "The environment of a server subprocess: a fresh home, the scripted factory importable, no keys yet."
    (home / "serve_cli_factory.py").write_text(FACTORY)
    e = {**os.environ, "PYTHONPATH": str(home), "OMP_NUM_THREADS": "1"}
    e.pop("LLMOPS_API_KEYS", None)
    return e


def llmops(*args, env, timeout=120):
    return subprocess.run([LLMOPS, *args], capture_output=True, text=True, env=env, timeout=timeout)


class Server:
    "`llmops serve ARGS` in the background; output goes to files so a chatty server never blocks on a full pipe."
    def __init__(self, tmp: Path, args: list, env: dict):
        self.out, self.err = tmp / "serve.out", tmp / "serve.err"
        self.proc = subprocess.Popen([LLMOPS, "serve", *args], env=env, cwd=tmp, stdout=self.out.open("w"), stderr=self.err.open("w"))

    def wait_healthy(self, url: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"the server exited {self.proc.returncode}: {self.err.read_text()[-2000:]}"
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200: return
            except httpx.HTTPError: pass
            time.sleep(0.2)
        raise AssertionError("the server did not become healthy: " + self.err.read_text()[-2000:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try: self.proc.wait(20)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait(10)
        return self.proc.returncode

    def output(self) -> str: return self.out.read_text() + self.err.read_text()


def ask(url, key=None, body=Q):
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=10, headers={"Authorization": f"Bearer {key}"} if key else {})


def test_serve_answers_with_a_key_traces_it_and_never_prints_the_key(home, env):
    port, db = free_port(), home / "traces.sqlite"
    url = f"http://127.0.0.1:{port}"
    srv = Server(home, ["--port", str(port), "--pipeline-factory", "serve_cli_factory:make", "--store", str(db), "--rate-limit", "0"],
                 {**env, "LLMOPS_API_KEYS": KEY})
    try:
        srv.wait_healthy(url)
        r = ask(url, KEY)
        assert r.status_code == 200, r.text
        b = r.json()
        assert b["choices"][0]["message"]["content"] == ANSWER and b["llmops"]["status"] == "answered"
        row = TraceStore(db).get(b["id"])
        assert row["status"] == "answered" and row["key_id"] == key_id(KEY) and row["answer"] == ANSWER
        assert ask(url).status_code == 401                                                  # no key
        assert ask(url, "not-the-key-0123456789abcdefgh").status_code == 401                 # a wrong key
        junk = httpx.post(url + "/v1/chat/completions", content=b"\xff\x00junk", timeout=10, headers={"Authorization": f"Bearer {KEY}"})
        assert junk.status_code == 400 and KEY not in junk.text                             # binary junk: a clear 4xx, not a 500
    finally:
        rc = srv.stop()
    out = srv.output()
    assert rc in (0, -signal.SIGTERM) and "Finished server process" in out, out[-2000:]       # SIGTERM: a graceful shutdown (uvicorn re-raises the signal)
    assert f"{url}/v1/chat/completions" in out and key_id(KEY) in out and str(db) in out
    assert KEY not in out and KEY not in db.read_bytes().decode("latin-1")


def test_serve_takes_keys_from_the_profiles_keys_file(home, env):
    port = free_port()
    (home / "keys.txt").write_text(f"# the batch job\n{hash_key(KEY2)}\n")                  # a hash: the file is useless to a thief
    prof = home / "serve.yaml"
    prof.write_text(f"params:\n  serve:\n    keys_file: keys.txt\n    port: {port}\n    rate_limit: 0\n    pipeline_factory: serve_cli_factory:make\n")
    url = f"http://127.0.0.1:{port}"
    srv = Server(home, ["--profile", str(prof), "--no-store"], env)
    try:
        srv.wait_healthy(url)
        assert ask(url, KEY2).status_code == 200 and ask(url, KEY).status_code == 401
    finally:
        rc = srv.stop()
    out = srv.output()
    assert rc in (0, -signal.SIGTERM) and key_id(KEY2) in out and "keys.txt" in out and "traces: off" in out and KEY2 not in out
    assert not (home / "traces").exists()                                                    # --no-store: no trace file anywhere


def test_no_key_refuses_to_start(home, env):
    for extra in ({}, {"LLMOPS_API_KEYS": " , ,"}):
        t = time.time()
        out = llmops("serve", "--port", str(free_port()), "--pipeline-factory", "serve_cli_factory:make", env={**env, **extra})
        assert out.returncode == 2 and "no API keys" in out.stderr and "LLMOPS_API_KEYS" in out.stderr, out.stderr
        assert time.time() - t < 30 and "Uvicorn running" not in out.stdout + out.stderr


@pytest.mark.parametrize("port", ["http", "0", "70000", "-1", "8000.5"])
def test_bad_port_is_an_argument_error(home, env, port):
    out = llmops("serve", "--port", port, env={**env, "LLMOPS_API_KEYS": KEY})
    assert out.returncode == 2 and "--port" in out.stderr and KEY not in out.stderr


def test_bad_keys_and_options_exit_2_without_echoing_secrets(home, env):
    (home / "junk.bin").write_bytes(b"\xff\xfe\x00\x81" * 1000)
    (home / "short.txt").write_text("tiny-key\n")
    (home / "typo.yaml").write_text("params:\n  serve: {prot: 9000}\n")
    (home / "badtype.yaml").write_text("params:\n  serve: {rate_limit: fast}\n")
    ok = {**env, "LLMOPS_API_KEYS": KEY}
    cases = [(["--keys-file", str(home / "missing.txt")], env, "no such file"),
             (["--keys-file", str(home / "junk.bin")], env, "UTF-8"),
             (["--keys-file", str(home / "short.txt")], env, "line 1"),
             ([], {**env, "LLMOPS_API_KEYS": "short-one"}, "shorter than 16"),
             (["--profile", str(home / "typo.yaml")], ok, "unknown option 'prot'"),
             (["--profile", str(home / "badtype.yaml")], ok, "'rate_limit': expected"),
             (["--profile", "no-such-profile"], ok, "not found"),
             (["--pipeline-factory", "no_colon_here"], ok, "module:function"),
             (["--pipeline-factory", "serve_cli_factory:nope"], ok, "has no 'nope'"),
             (["--store", "x.sqlite", "--no-store"], ok, "not allowed with"),
             (["--timeout", "-5"], ok, "timeout must be"),
             (["--rate-limit", "nan"], ok, "rate limit must be")]
    for args, e, msg in cases:
        out = llmops("serve", "--port", str(free_port()), *args, env=e)
        assert out.returncode == 2 and msg in out.stderr, (args, out.returncode, out.stderr[-1500:])
        assert "Traceback" not in out.stderr and "tiny-key" not in out.stderr and "short-one" not in out.stderr and KEY not in out.stderr


def test_a_busy_port_fails_instead_of_hanging(home, env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); s.listen()
        out = llmops("serve", "--port", str(s.getsockname()[1]), "--pipeline-factory", "serve_cli_factory:make", "--no-store",
                     env={**env, "LLMOPS_API_KEYS": KEY}, timeout=60)
    assert out.returncode != 0 and "address already in use" in out.stderr.lower() and KEY not in out.stdout + out.stderr


# ---------------------------------------------------------------- releases (the --release/--canary flags of 12_cli)

def _has_release_flags() -> bool:
    from llmops_nb.cli import SERVE_OPTIONS
    return "release" in SERVE_OPTIONS and "canary" in SERVE_OPTIONS


@pytest.mark.skipif(not _has_release_flags(), reason="llmops serve has no --release/--canary flags yet (nbs/12_cli.ipynb)")
def test_serve_release_and_canary_flags_refuse_bad_values(home, env):
    ok = {**env, "LLMOPS_API_KEYS": KEY}
    cases = [(["--release", "no-such-release"], "'no-such-release'"), (["--canary", "staging=abc"], "'abc' is not a percentage"),
             (["--canary", "=10"], "alias before '=' is missing"), (["--canary", "staging=150"], "at most 100"),
             (["--release", "production", "--model", "x"], "both say what to serve")]
    for args, msg in cases:
        out = llmops("serve", "--port", str(free_port()), "--no-store", *args, env=ok)
        assert out.returncode == 2 and msg in out.stderr, (args, out.returncode, out.stderr[-1500:])
        assert "Traceback" not in out.stderr and "Uvicorn running" not in out.stdout + out.stderr
