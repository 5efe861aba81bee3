"""The deploy/ examples: YAML parses, Kubernetes objects are complete, schedules are valid cron, shell scripts parse, and
every `llmops` command line in them (and in the accelerate configs and the distributed-training docs) is accepted by the CLI:
`llmops run ...` by `--dry-run` validation in a fresh home, the other subcommands by the CLI's own parser."""
import json, re, shlex, shutil, subprocess
from pathlib import Path
import pytest, yaml
from conftest import ROOT

DEPLOY = ROOT / "deploy"
YAMLS = sorted(DEPLOY.rglob("*.yaml"))
SCRIPTS = sorted(DEPLOY.rglob("*.sbatch"))
CRONTABS = sorted(DEPLOY.rglob("*.crontab"))
NOTEBOOKS = [ROOT / "nbs" / n for n in ("06_train.ipynb", "08_generate.ipynb", "11_serve.ipynb")]
STOP = {"&&", "||", ";", "|", "&", ">", ">>", "<", ">&", "(", ")", "{", "}"}
PATH_PARAMS = {"rules", "accelerate_config"}                      # parameters that name a file of the repository


# ---------------------------------------------------------------- extraction
def logical_lines(text: str) -> list:
    "Lines with backslash continuations joined."
    out, cur = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"): cur += line.rstrip()[:-1] + " "
        else: out.append(cur + line); cur = ""
    if cur: out.append(cur)
    return out

def shell_vars(text: str) -> dict:
    "Simple assignments of a shell script or crontab: NAME=value and NAME=${OTHER:-default} (the default wins)."
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*(?:export\s+)?([A-Za-z_]\w*)=(\S*)\s*(?:#.*)?$", line)
        if not m: continue
        v = m.group(2).strip("'\"")
        d = re.fullmatch(r"\$\{\w+:-(.*)\}", v)
        out[m.group(1)] = d.group(1) if d else v
    return out

def expand(tok: str, env: dict, where: str) -> str:
    def sub(m):
        name = m.group(1) or m.group(2)
        if name not in env: raise AssertionError(f"{where}: ${name} in an llmops command line has no value in the file")
        return env[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, tok)

def commands(line: str, env: dict = {}, where: str = "") -> list:
    "The argv (after `llmops`) of every llmops command in one shell line; `bash -c '...'` strings are searched too."
    if not re.search(r"(^|[\s/'\"])llmops(\s|$)", line): return []           # prose that only names the project or quotes `llmops`
    lx = shlex.shlex(line, posix=True, punctuation_chars=True); lx.whitespace_split = True
    try: toks = list(lx)
    except ValueError as e: raise AssertionError(f"{where}: cannot tokenize {line!r}: {e}")
    found = []
    for i, t in enumerate(toks):
        if " " in t and "llmops" in t: found += commands(t, env, where)           # a quoted script (bash -c '...')
        if t != "llmops" and not t.endswith("/bin/llmops"): continue                 # the command, or a venv's (not /scratch/llmops)
        argv = []
        for j in range(i + 1, len(toks)):
            u = toks[j]
            if u in STOP or (u.isdigit() and j + 1 < len(toks) and toks[j + 1].startswith((">", "<"))): break
            u = expand(u, env, where)
            if u: argv.append(u)
        found.append(argv)
    return found

def _fences(markdown: str) -> str:
    "The text inside ``` fences."
    return "\n".join(re.findall(r"```[^\n]*\n(.*?)```", markdown, flags=re.S))

def _containers(doc: dict) -> list:
    spec = doc.get("spec") or {}
    pod = (spec.get("jobTemplate", {}).get("spec", {}).get("template", {}) or spec.get("template", {})).get("spec", {})
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]

def _container_lines(c: dict) -> list:
    argv = [*(c.get("command") or []), *(c.get("args") or [])]
    if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c": return logical_lines(argv[2])
    return [shlex.join(argv)] if argv else []

def extract(path: Path) -> list:
    "(where, argv) of every llmops command in a deploy file, an accelerate config's comments or a notebook's markdown."
    text, found = path.read_text(encoding="utf-8"), []
    if path.suffix == ".ipynb":
        md = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
        lines, env = logical_lines(_fences(md)), {}
    elif path.suffix == ".md": lines, env = logical_lines(_fences(text)), {}
    elif path.suffix == ".yaml":
        lines, env = [l.lstrip()[1:] for l in text.splitlines() if l.lstrip().startswith("#")], {}
        for doc in yaml.safe_load_all(text):
            for c in _containers(doc or {}): lines += _container_lines(c)
    else:
        env = shell_vars(text)
        lines = [l.lstrip()[1:] if l.lstrip().startswith("#") and not l.startswith("#!") else l for l in logical_lines(text)]
    for n, line in enumerate(lines):
        found += [(f"{path.relative_to(ROOT)}: {line.strip()[:120]}", argv) for argv in commands(line, env, str(path))]
    return found

SOURCES = [*YAMLS, *SCRIPTS, *CRONTABS, DEPLOY / "README.md", *sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), *NOTEBOOKS]
ALL = [cmd for p in SOURCES for cmd in extract(p)]


def test_extraction_handles_continuations_env_prefixes_and_nested_scripts():
    line = logical_lines("cd /r && LLMOPS_HOME=/h .venv/bin/llmops run train_sft \\\n  -p processes \"$N\" -p accelerate_config $CFG >> log 2>&1\n")
    assert len(line) == 1
    assert commands(line[0], {"N": "4", "CFG": "configs/accelerate/fsdp.yaml"}) == [
        ["run", "train_sft", "-p", "processes", "4", "-p", "accelerate_config", "configs/accelerate/fsdp.yaml"]]
    nested = "flock -n /tmp/l bash -c '.venv/bin/llmops run prepare_data && llmops run train_sft --profile cpu' >> x 2>&1"
    assert commands(nested) == [["run", "prepare_data"], ["run", "train_sft", "--profile", "cpu"]]
    assert commands("echo `llmops serve` is a server; llmops-nb is the package") == []
    assert commands("llmops run monitor -p current -1d; echo done") == [["run", "monitor", "-p", "current", "-1d"]]
    assert shell_vars("A=${X:-7}\nexport B=b  # note\nC=\"c\"\n") == {"A": "7", "B": "b", "C": "c"}
    with pytest.raises(AssertionError, match=r"\$MISSING"): commands("llmops run x -p a $MISSING", {}, "f")
    with pytest.raises(AssertionError, match="cannot tokenize"): commands("llmops run 'unclosed", {}, "f")


def test_every_deploy_file_with_llmops_in_it_yields_commands():
    "A file that runs llmops must give at least one command: an extraction that finds nothing would pass vacuously."
    for p in [*YAMLS, *SCRIPTS, *CRONTABS, DEPLOY / "README.md"]:
        if p.name in ("storage.yaml", "alerts.yaml", "vllm.yaml"): continue     # no llmops command runs in these
        assert extract(p), f"{p}: no llmops command found"
    runbooks = {argv[1] for _, argv in ALL if argv[:1] == ["run"]}
    assert {"train_sft", "evaluate", "monitor", "prepare_data"} <= runbooks, runbooks
    assert any(argv[:2] == ["monitor", "check"] for _, argv in ALL) and any(argv[:2] == ["eval", "gate"] for _, argv in ALL)
    configs = {argv[argv.index("accelerate_config") + 1] for _, argv in ALL if "accelerate_config" in argv}
    assert {"configs/accelerate/fsdp.yaml", "configs/accelerate/deepspeed_zero2.yaml", "configs/accelerate/deepspeed_zero3.yaml"} <= configs, configs
    assert len(ALL) >= 20, len(ALL)


def _repo_file(value: str) -> Path:
    "A path as the jobs see it: relative to the checkout, or under /app (the checkout in the image)."
    return ROOT / value[len("/app/"):] if value.startswith("/app/") else ROOT / value


@pytest.mark.parametrize("where,argv", [c for c in ALL if c[1][:1] == ["run"]], ids=lambda v: v if isinstance(v, str) else None)
def test_llmops_run_lines_pass_dry_run_validation(where, argv, home, capsys):
    from llmops_nb.cli import main
    rc = main([*argv, "--dry-run"])
    out = capsys.readouterr()
    assert rc == 0, f"{where}\n{out.err}"
    values = json.loads(out.out)
    for k in PATH_PARAMS & set(values):
        if values[k] is not None: assert _repo_file(values[k]).is_file(), f"{where}: {k} {values[k]} is not a file of the repository"


@pytest.mark.parametrize("where,argv", [c for c in ALL if c[1][:1] != ["run"]], ids=lambda v: v if isinstance(v, str) else None)
def test_other_llmops_lines_are_accepted_by_the_parser(where, argv):
    from llmops_nb.cli import _parser
    parser, argv = _parser(), list(argv)
    try: a = parser.parse_args(argv)
    except SystemExit as e: raise AssertionError(f"{where}: rejected by the llmops parser") from e
    for attr in ("rules",):
        if getattr(a, attr, None): assert _repo_file(getattr(a, attr)).is_file(), f"{where}: --{attr} {getattr(a, attr)} does not exist"


# ---------------------------------------------------------------- YAML and Kubernetes
def _docs(p: Path) -> list: return [d for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d is not None]
K8S = [(p, d) for p in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in _docs(p)]


def test_every_yaml_parses_and_k8s_objects_are_named():
    for p in YAMLS: assert _docs(p), f"{p}: empty"
    assert {d["kind"] for _, d in K8S} >= {"CronJob", "Deployment", "Service", "PersistentVolumeClaim"}
    for p, d in K8S:
        assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), f"{p}: a document without apiVersion/kind"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d.get("metadata", {}).get("name", "")), f"{p}: bad metadata.name"


_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_NAMES = {3: "jan feb mar apr may jun jul aug sep oct nov dec".split(), 4: "sun mon tue wed thu fri sat".split()}

def cron_ok(expr: str) -> bool:
    "A valid 5-field cron expression (numbers, names, *, ranges, lists, steps)."
    fields = str(expr).split()
    if len(fields) != 5: return False
    def val(s, i):
        if s.isdigit(): return int(s)
        names = _NAMES.get(i, [])
        return (names.index(s.lower()) + (1 if i == 3 else 0)) if s.lower() in names else None
    for i, f in enumerate(fields):
        lo, hi = _RANGES[i]
        for item in f.split(","):
            m = re.fullmatch(r"(\*|[\w]+(?:-[\w]+)?)(?:/(\d+))?", item)
            if not m or (m.group(2) is not None and int(m.group(2)) < 1): return False
            if m.group(1) == "*": continue
            ends = [val(x, i) for x in m.group(1).split("-")]
            if any(e is None or not lo <= e <= hi for e in ends) or (len(ends) == 2 and ends[0] > ends[1]): return False
    return True


def test_cron_checker_rejects_bad_expressions():
    for good in ("5 * * * *", "30 0 * * *", "0 3 * * 0", "*/15 9-17 * * mon-fri", "0 0 1,15 jan,jul *"): assert cron_ok(good), good
    for bad in ("* * * *", "60 * * * *", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8", "*/0 * * * *", "5-1 * * * *",
                "@daily", "a b c d e", "0 0 * * * *", ""):
        assert not cron_ok(bad), bad


def test_cronjobs_have_valid_schedules_forbid_overlap_and_read_secrets_by_reference():
    cronjobs = [(p, d) for p, d in K8S if d["kind"] == "CronJob"]
    assert {d["metadata"]["name"] for _, d in cronjobs} >= {"llmops-monitor-check", "llmops-monitor", "llmops-evaluate", "llmops-train-sft"}
    for p, d in cronjobs:
        assert cron_ok(d["spec"]["schedule"]), f"{p}: {d['spec']['schedule']!r}"
        assert d["spec"]["concurrencyPolicy"] == "Forbid", p
        assert d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure"), p
    claims = {d["metadata"]["name"] for _, d in K8S if d["kind"] == "PersistentVolumeClaim"}
    secrets_used = set()
    for p, d in K8S:
        for c in _containers(d):
            assert c.get("image") and c.get("name"), f"{p}: container without image or name"
            for e in c.get("env", []):
                if re.search(r"KEY|SECRET|TOKEN|WEBHOOK|PASSWORD", e["name"]):
                    assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), f"{p}: {e['name']} must come from a secretKeyRef"
                    secrets_used.add(e["name"])
        pod = (d.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template") or d.get("spec", {}).get("template") or {}).get("spec", {})
        for v in pod.get("volumes", []):
            if "persistentVolumeClaim" in v: assert v["persistentVolumeClaim"]["claimName"] in claims, f"{p}: unknown claim"
    assert {"WANDB_API_KEY", "LLMOPS_API_KEYS", "LLMOPS_ENDPOINT_KEY"} <= secrets_used


def test_gpu_work_asks_for_gpus_and_services_select_deployments():
    by_name = {d["metadata"]["name"]: d for _, d in K8S if d["kind"] != "Service"}
    services = [d for _, d in K8S if d["kind"] == "Service"]
    for name, gpus in (("llmops-train-sft", 4), ("llmops-evaluate", 1), ("llmops-vllm", 1)):
        c = [c for c in _containers(by_name[name]) if "limits" in c.get("resources", {})][-1]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == gpus, name
    train = " ".join(_container_lines(_containers(by_name["llmops-train-sft"])[0]))
    assert re.search(r"-p processes 4\b", train), "the train job must start one process per requested GPU"
    deployments = {n: d for n, d in by_name.items() if d["kind"] == "Deployment"}
    for n, d in deployments.items():
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items(), n
    assert {d["metadata"]["name"] for d in services} == {"llmops-serve", "llmops-vllm"}
    for d in services:
        assert any(d["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items() for dep in deployments.values()), d
    vllm_port = next(d for d in services if d["metadata"]["name"] == "llmops-vllm")["spec"]["ports"][0]["port"]
    serve = shlex.split(_container_lines(_containers(by_name["llmops-serve"])[0])[0])
    assert serve[serve.index("--endpoint") + 1] == f"http://llmops-vllm:{vllm_port}/v1"
    vllm = _containers(by_name["llmops-vllm"])[-1]["args"]
    assert "--enable-lora" in vllm and vllm[vllm.index("--lora-modules") + 1].startswith(serve[serve.index("--endpoint-model") + 1] + "=")


def test_alert_rules_load():
    from llmops_nb.alerts import load_alert_rules
    rules = load_alert_rules(DEPLOY / "alerts.yaml")
    assert len(rules.rules) >= 3 and rules.webhook == "env:LLMOPS_ALERT_WEBHOOK"


# ---------------------------------------------------------------- crontab and Slurm
def test_crontab_lines_have_five_valid_fields_and_a_command():
    n = 0
    for p in CRONTABS:
        for i, line in enumerate(p.read_text().splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#") or re.match(r"[A-Za-z_]\w*=", s): continue
            parts = s.split(None, 5)
            assert len(parts) == 6 and cron_ok(" ".join(parts[:5])), f"{p}:{i}: expected 5 schedule fields and a command: {s[:80]}"
            assert "%" not in parts[5].replace("\\%", ""), f"{p}:{i}: an unescaped % ends a cron command"
            assert "flock" in parts[5] and ">>" in parts[5] and "cd " in parts[5], f"{p}:{i}: cd, flock and a log append expected"
            n += 1
    assert n >= 4


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_sbatch_scripts_pass_bash_n_and_ask_for_one_node(tmp_path):
    assert {p.name for p in SCRIPTS} == {"train_sft.sbatch", "evaluate.sbatch"}
    for p in SCRIPTS:
        r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, f"{p}: {r.stderr}"
        text = p.read_text()
        assert text.startswith("#!/bin/bash") and "#SBATCH --nodes=1" in text and re.search(r"#SBATCH --gres=gpu:\d", text), p
    (bad := tmp_path / "bad.sbatch").write_text("#!/bin/bash\nif true; then\n  echo x\n")
    assert subprocess.run(["bash", "-n", str(bad)], capture_output=True).returncode != 0     # the check can fail


# ---------------------------------------------------------------- accelerate configs
def test_accelerate_configs_load_with_accelerate_and_use_its_key_names():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser
    dests = {a.dest for a in launch_command_parser()._actions}
    kinds = {}
    for p in sorted((ROOT / "configs" / "accelerate").glob("*.yaml")):
        cfg = load_config_from_file(str(p))                   # accelerate's own reader: unknown top-level keys fail
        kinds[p.stem] = str(cfg.distributed_type).split(".")[-1]
        assert set(cfg.deepspeed_config) <= dests, f"{p}: deepspeed_config keys {set(cfg.deepspeed_config) - dests} are not accelerate launch options"
        assert p.read_text().startswith("#") and "accelerate launch --config_file configs/accelerate/" + p.name in p.read_text(), f"{p}: launch command comment"
    assert kinds == {"cpu_ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED"}
    for stage in (2, 3):
        cfg = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"deepspeed_zero{stage}.yaml"))
        assert cfg.deepspeed_config["zero_stage"] == stage and cfg.mixed_precision == "bf16"
        assert "gradient_accumulation_steps" not in cfg.deepspeed_config     # left to the Trainer ("auto"), so grad_accum cannot disagree
    assert load_config_from_file(str(ROOT / "configs" / "accelerate" / "deepspeed_zero3.yaml")).deepspeed_config["zero3_save_16bit_model"] is True
