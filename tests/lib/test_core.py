"Public behaviour of llmops_nb.core: settings, typed values, atomic io, digests, model references."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
from llmops_nb.core import (ConfigError, ModelNotAvailable, Settings, append_jsonl, atomic_dir, atomic_open, atomic_write, coerce,
                            default_dtype, device, digest, is_offline, load_profile, load_settings, locate_model,
                            packaged_model_path, read_json, read_jsonl, read_yaml, set_seed, set_threads, write_json)


def test_offline_by_default():
    assert is_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_settings_layers(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("settings:\n  seed: 1\n  device: cpu\n  tracker: none\n")
    s = load_settings(prof, env={"LLMOPS_SEED": "2", "LLMOPS_THREADS": "3"}, threads=4)
    assert (s.seed, s.device, s.tracker, s.threads) == (2, "cpu", "none", 4)
    assert s.sources["seed"] == "LLMOPS_SEED" and s.sources["device"] == str(prof) and s.sources["threads"] == "argument"
    assert load_settings(env={}).seed == Settings().seed


@pytest.mark.parametrize("text, msg", [
    ("settings:\n  devcie: cpu\n", "unknown setting 'devcie'"),
    ("settings:\n  seed: [1]\n", "setting 'seed': expected int"),
    ("settings: [1, 2]\n", "'settings' must be a mapping"),
    ("other: 1\n", "unknown section"),
    ("settings:\n  seed: 1\n bad indent\n", "invalid YAML"),
    ("- a\n- b\n", "a profile must be a mapping"),
])
def test_bad_profiles_name_the_file(tmp_path, text, msg):
    p = tmp_path / "prof.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=msg) as e:
        load_settings(p, env={})
    assert "prof.yaml" in str(e.value)


def test_bad_env_and_arguments():
    with pytest.raises(ConfigError, match="LLMOPS_DEVICE: expected"):
        load_settings(env={"LLMOPS_DEVICE": "tpu"})
    with pytest.raises(ConfigError, match="unknown setting 'sed'"):
        load_settings(env={}, sed=1)
    with pytest.raises(ConfigError, match="'threads': must be >= 0"):
        Settings(threads=-1)
    with pytest.raises(FileNotFoundError, match="profile 'nope' not found"):
        load_settings("nope", env={})


@pytest.mark.parametrize("value, tp, expected", [("7", int, 7), ("0.5", float, 0.5), ("off", bool, False),
                                                 ("null", int | None, None), ('{"a": 1}', dict, {"a": 1}), (3, float, 3.0)])
def test_coerce(value, tp, expected):
    assert coerce(value, tp) == expected


@pytest.mark.parametrize("value, tp", [("x", int), (1.5, int), (True, float), (1, str), ("maybe", bool), ("[1", list), (None, int)])
def test_coerce_refuses(value, tp):
    with pytest.raises(ConfigError, match="where: expected"):
        coerce(value, tp, "where")


def test_atomic_write_survives_sigkill(tmp_path):
    target = tmp_path / "f.json"
    write_json(target, {"v": 1})
    code = ("from llmops_nb.core import atomic_open\nimport time\n"
            f"with atomic_open({str(target)!r}) as f:\n    f.write('y' * 30_000_000); f.flush(); print('go', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "go"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert read_json(target) == {"v": 1}
    # a fresh write after the crash works and leaves no partial file visible as the target
    write_json(target, {"v": 2})
    assert read_json(target) == {"v": 2}


def test_atomic_write_exception_and_modes(tmp_path):
    f = atomic_write(tmp_path / "a.bin", b"\x00\x01")
    assert f.read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_open(tmp_path / "x", "a"):
            pass
    with pytest.raises(ZeroDivisionError):
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
            1 / 0
    assert not (tmp_path / "d").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_jsonl_errors_name_the_line(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, {"a": 1})
    with open(p, "a") as f:
        f.write("not json\n{\"a\": 2}\n")
    with pytest.raises(ConfigError, match=r"log.jsonl:2: invalid JSON line"):
        read_jsonl(p)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_json(tmp_path / "bin.json")
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml(tmp_path / "empty.yaml") is None


def test_digest_is_content_addressed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("hello")
    d1 = digest(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("hello")
    assert digest(tmp_path / "b") == d1                      # same content elsewhere, same digest
    (tmp_path / "b" / ".x.txt.abc.tmp").write_text("partial")  # a crashed writer's temp file is ignored
    assert digest(tmp_path / "b") == d1
    (tmp_path / "b" / "x.txt").write_text("hello!")
    assert digest(tmp_path / "b") != d1
    assert digest([{"a": 1, "b": [1, 2]}]) == digest([{"b": [1, 2], "a": 1}])
    with pytest.raises(FileNotFoundError):
        digest(tmp_path / "missing")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 50)               # 50 MB hashes in blocks
    assert len(digest(big)) == 64


def test_locate_model_fails_fast():
    t = time.time()
    with pytest.raises(ModelNotAvailable, match="not in the Hugging Face cache"):
        locate_model("openai-community/gpt2")
    assert time.time() - t < 10
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        locate_model("/no/such/model")
    with pytest.raises(TypeError):
        locate_model(3)
    assert locate_model("sentence-transformers/all-MiniLM-L6-v2") == packaged_model_path("all-minilm-l6-v2")
    assert packaged_model_path("smollm2-135m-instruct").stat().st_size > 50_000_000


def test_seed_device_threads():
    import torch
    set_seed(5)
    a = torch.rand(3)
    set_seed(5)
    assert torch.equal(a, torch.rand(3))
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    assert device() == ("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")   # the best one available
    assert device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="device"):
        device("tpu")
    assert default_dtype("cpu") == torch.float32
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError):
        set_threads(-2)


# ---- the canonical secret table -----------------------------------------------------------------------------------
from llmops_nb.core import REDACTED, SECRET_PATTERNS, find_secrets, is_secret_name, redact


@pytest.mark.parametrize("text,kind", [
    ("AKIA" + "IOSFODNN7EXAMPLE", "aws_access_key"), ("xoxb-" + "123456789012-abcdefghijkl", "slack_token"),
    ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "stripe_key"), ("hf_" + "abcdefghijklmnopqrstuvwxyz0123456789", "huggingface_token"),
    ("hf_" + "abcdefghij0123456789", "huggingface_token"), ("sk-" + "abcdefghijklmnopqrstu", "openai_key"),
    ("sk-ant-" + "api03-abcdefghijklmnopqrstuv", "anthropic_key"), ("ghp_" + "abcdefghijklmnopqrstuvwxyz0123", "github_token"),
    ("github_pat_" + "abcdefghijklmnopqrstuvwx", "github_token"), ("glpat-" + "abcdefghijklmnopqrst", "gitlab_token"),
    ("wandb_v1_" + "abcdefghijklmnopqrstuvwx", "wandb_key"), ("AIza" + "SyA-abcdefghijklmnopqrstuvwxyz01234", "google_api_key"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "private_key"),
    ("https://hooks.slack.com/services/T0AAA/B0BBB/xyzXYZ123abc", "slack_webhook"),
    ("Authorization: Bearer abcDEF0123456789xyz", "bearer_token"),
    ("postgres://user:pass@host:5432/db", "connection_password"), ("redis://:hunter2@cache:6379", "connection_password"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_key"),
    ("client_secret: 'Zx81kQ0pLm2vR7tYq'", "assigned_secret"),
])
def test_find_secrets_covers_every_shape(text, kind):
    assert [k for k, *_ in find_secrets(f"here: {text} end")] == [kind]


def test_find_secrets_spans_and_quiet_text():
    dsn = "postgres://user:pass@host/db"
    (k, a, b), = find_secrets(dsn)
    assert dsn[a:b] == "pass"                                          # only the password, the DSN stays readable
    for quiet in ("password: see the wiki", "Version 10.2.0.1", "token budget is 512", "the key point", "hooks.slack.com docs"):
        assert find_secrets(quiet) == [], quiet
    assert {k for k, *_ in SECRET_PATTERNS} >= {"openai_key", "huggingface_token", "github_token", "aws_access_key", "slack_token",
                                              "wandb_key", "connection_password", "slack_webhook", "private_key", "jwt"}


def test_is_secret_name():
    for n in ("hf_token", "wandb-api-key", "db.password", "secretKey", "authorization", "Authorization", "passphrase", "cookie",
              "webhook_url", "database_url", "SENTRY_DSN", "X-Auth-Token", "APIKey", "credentials", "private_key"):
        assert is_secret_name(n), n
    for n in ("monkey", "tokenizer_name", "max_tokens", "max_new_tokens", "url", "author", "keyword", "database", "num_tokens"):
        assert not is_secret_name(n), n


def test_redaction_patterns():
    r = redact({"OPENAI_API_KEY": "sk-proj-abcdefghijklmnopqrstuvwx", "text": "token ghp_abcdefghijklmnopqrstuvwxyz0123 here",
                "auth": {"user": "a"}, "n": None, "list": ["AKIAABCDEFGHIJKLMNOP"]})
    assert r["OPENAI_API_KEY"] == REDACTED and "ghp_" not in r["text"] and r["list"] == [REDACTED] and r["n"] is None


def test_redaction_of_lists_names_dsns_and_webhooks():
    "List values under secret names, more secret names (camelCase too), DSN passwords and Slack webhooks are redacted."
    r = redact({"tokens": ["tok-aaaa-1111"], "api_keys": ["k-one-1234", "k-two-5678"], "authorization": "Basic dXNlcjpwYXNz",
                "passphrase": "correct horse battery", "cookie": "sid=abc", "webhook_url": "https://example.com/h/1",
                "database_url": "postgres://u:p4ss@h/db", "secretKey": "abc", "clientSecret": "xyz",
                "notes": ["connect to postgres://app:hunter22@db.internal:5432/shop",
                          "post to https://hooks.slack.com/services/T0AAA/B0BBB/xyzXYZ123abc"],
                "max_tokens": 64, "tokenizer_name": "tiny", "author": "ana"})
    for k in ("api_keys",): assert r[k] == [REDACTED, REDACTED]
    for k in ("authorization", "passphrase", "cookie", "webhook_url", "database_url", "secretKey", "clientSecret"): assert r[k] == REDACTED, k
    assert r["notes"] == ["connect to postgres://app:***@db.internal:5432/shop", "post to ***"]
    assert (r["max_tokens"], r["tokenizer_name"], r["author"]) == (64, "tiny", "ana")
    assert redact(("x", {"Authorization": ["Bearer abc"]})) == ("x", {"Authorization": [REDACTED]})
