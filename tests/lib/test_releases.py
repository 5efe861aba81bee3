"The release registry through the `llmops releases` command and the Python API: gated promotion, overrides, rollback, concurrent moves, bad input."
import json, os, shutil, subprocess
from pathlib import Path
import pytest
from conftest import LLMOPS
from llmops_nb.core import Settings, load_settings, read_json, write_json
from llmops_nb.gates import gate
from llmops_nb.pipeline import release_spec, spec_digest
from llmops_nb.releases import PromotionRefused, ReleaseError, ReleaseRegistry, find_evidence
from llmops_nb.runs import read_run, start_run
from llmops_nb.suites import load_suite, run_suite

SUITE = load_suite([{"id": f"q{i}", "question": f"q{i}?", "answer": "yes"} for i in range(10)], name="toy")
RULES = {"rules": [{"metric": "exact_match", "min": 0.6}, {"metric": "exact_match", "no_regression": True, "optional": True}]}


def releases(*args, timeout=120):
    "`llmops releases ARGS` as a subprocess in the test's project home."
    return subprocess.run([LLMOPS, "releases", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=timeout)


def evaluated(spec: dict, knows: float = 1.0, baseline: str = None, release: bool = True) -> str:
    "An evaluate run record of `spec` (release.json, eval/, gate.json) for a system that knows a fraction of the answers; its run id."
    run = start_run("evaluate", {}, load_settings(), tracker="none")
    res = run_suite(lambda q: "yes" if int(q[1:-1]) < knows * 10 else "no", SUITE, metrics=["exact_match"])
    res.save(run.dir / "eval")
    if release: write_json(run.dir / "release.json", {"digest": spec_digest(spec), "spec": spec})
    if baseline: run.add_input("baseline", digest="sha", run_id=baseline)
    write_json(run.dir / "gate.json", gate(res, RULES, baseline=read_run(baseline).dir / "eval" if baseline else None).to_dict())
    run.finish()
    return run.id


def snapshot(root: Path) -> dict:
    "Every file of a registry and its bytes (the lock file aside): equal snapshots mean nothing changed."
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"} if root.exists() else {}


@pytest.fixture
def specs(home, tiny_model):
    "Three release specs of the tiny model in the test's project home, differing only in max_new_tokens (32, 64, 96)."
    return [release_spec(str(tiny_model), index=None, max_new_tokens=n) for n in (32, 64, 96)]


@pytest.fixture
def reg(home):
    return ReleaseRegistry()


def test_create_list_show_from_an_evaluate_run(specs, reg):
    run = evaluated(specs[0])
    out = releases("create", "--from-eval", run, "--note", "first try")
    assert out.returncode == 0, out.stderr
    v = out.stdout.strip()
    assert v == spec_digest(specs[0])[:12] and reg.get(v).note == "first try"
    assert releases("promote", v, "--to", "staging").returncode == 0
    out = releases("list")
    assert out.returncode == 0 and out.stdout.splitlines()[0].split() == ["version", "created", "by", "aliases", "summary"]
    assert v in out.stdout and "staging" in out.stdout and "max_new_tokens=32" in out.stdout
    rows = json.loads(releases("list", "--json").stdout)
    assert [(r["version"], r["aliases"]) for r in rows] == [(v, ["staging"])]
    view = json.loads(releases("show", "staging", "--json").stdout)
    assert view["digest"] == spec_digest(specs[0]) and [e["run"] for e in view["evidence"]] == [run] and view["evidence"][0]["gate"] is True
    text = releases("show", "latest").stdout
    assert f"release {v}" in text and "aliases: staging" in text and f"evaluate run {run}: gate PASS" in text
    for part in ("base_model", "adapter", "index", "prompt", "strict_prompt", "policy", "generation", "retrieval"):
        assert f"\n  {part} " in text, part


def test_production_without_passing_evidence_is_refused(specs, reg):
    a = releases("create", "--from-eval", (e_a := evaluated(specs[0]))).stdout.strip()
    assert releases("promote", a, "--to", "production").returncode == 0          # the first: an absolute threshold passed
    b = reg.create(specs[1]).version
    before = snapshot(reg.root)
    out = releases("promote", b, "--to", "production")
    assert out.returncode == 1 and out.stdout == "", out
    assert f"needs a completed evaluate run of release {b} whose gate passed against the current production release {a}" in out.stderr
    assert "Evaluate runs of this release: none" in out.stderr
    e_b = evaluated(specs[1], knows=0.3, baseline=e_a)                              # measured, but the gate fails
    out = releases("promote", b, "--to", "production")
    assert out.returncode == 1 and f"evaluate run {e_b}: gate FAIL" in out.stderr, out.stderr
    evaluated(specs[1])                                                             # passes, but not against production
    with pytest.raises(PromotionRefused, match="no baseline"): reg.promote(b, "production")
    assert snapshot(reg.root) == before and reg.aliases() == {"production": a}
    evaluated(specs[1], baseline=e_a)
    out = releases("promote", b, "--to", "production")
    assert out.returncode == 0 and out.stdout.strip() == f"production: {a} -> {b}", out


def test_force_needs_a_reason_and_is_shown(specs, reg):
    a = releases("create", "--from-eval", evaluated(specs[0])).stdout.strip()
    reg.promote(a, "production")
    b = reg.create(specs[1]).version
    before = snapshot(reg.root)
    out = releases("promote", b, "--to", "production", "--force")
    assert out.returncode == 2 and out.stderr.startswith("error: force needs a reason"), out.stderr
    assert snapshot(reg.root) == before
    out = releases("promote", b, "--to", "production", "--force", "--reason", "legal needs the longer answers today")
    assert out.returncode == 0 and "OVERRIDE" in out.stdout, out
    h = reg.history("production")[-1]
    assert (h["forced"], h["reason"], h["by"], h["to"]) == (True, "legal needs the longer answers today", reg.get(b).by, b)
    assert "refused" in h["refused_because"]
    text = releases("show", "production").stdout
    first = text.index("!! OVERRIDE")
    assert first < text.index("aliases:") and f"by {h['by']} at {h['at'][:10]}" in text[first:] and "reason: legal needs the longer answers today" in text
    view = json.loads(releases("show", b, "--json").stdout)
    assert [o["reason"] for o in view["overrides"]] == ["legal needs the longer answers today"]
    assert json.loads(releases("show", a, "--json").stdout)["overrides"] == []      # the override belongs to b


def test_rollback_restores_the_previous_release(specs, reg):
    vs = [reg.create(s).version for s in specs]
    for v in vs: assert releases("promote", v, "--to", "staging").returncode == 0
    out = releases("rollback", "staging", "--reason", "bad answers")
    assert out.returncode == 0 and out.stdout.strip() == f"staging: {vs[2]} -> {vs[1]}", out
    assert reg.get("staging").version == vs[1] and reg.history("staging")[-1]["reason"] == "bad answers"
    assert reg.rollback("staging").version == vs[0]
    before = snapshot(reg.root)
    out = releases("rollback", "staging")
    assert out.returncode == 2 and "no previous release" in out.stderr and snapshot(reg.root) == before


def test_concurrent_promotions_from_processes_lose_no_move(home, tiny_model, reg):
    vs = [reg.create(release_spec(str(tiny_model), index=None, max_new_tokens=100 + i)).version for i in range(6)]
    procs = [subprocess.Popen([LLMOPS, "releases", "promote", v, "--to", "candidate"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for v in vs]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6, [p.stderr.read() for p in procs]
    moves = [h for h in reg.history("candidate") if h["event"] == "promote"]
    assert sorted(h["to"] for h in moves) == sorted(vs)                             # every move is in the history
    assert [h["from"] for h in moves] == [None] + [h["to"] for h in moves[:-1]]     # each move starts where the last one ended
    chain = read_json(reg.root / "aliases.json")["candidate"]
    assert [d[:12] for d in chain["previous"]] + [chain["digest"][:12]] == [h["to"] for h in moves]
    assert [reg.rollback("candidate").version for _ in range(5)] == [h["to"] for h in moves[:-1]][::-1]


def test_diff_shows_the_parts_that_differ(specs, reg):
    a, b = reg.create(specs[0]).version, reg.create(specs[1]).version
    out = releases("diff", a, b)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["part", a, b] and lines[1].split() == ["generation.max_new_tokens", "32", "64"] and len(lines) == 2
    assert json.loads(releases("diff", a, b, "--json").stdout) == [{"part": "generation.max_new_tokens", "a": 32, "b": 64}]
    assert releases("diff", a, a).stdout.startswith("no differences")


def test_unknown_references_and_aliases(specs, reg):
    v = reg.create(specs[0]).version
    reg.promote(v, "staging")
    before = snapshot(reg.root)
    for args, msg in [(("show", "nosuch"), "no release or alias 'nosuch'"), (("promote", "nosuch", "--to", "staging"), "no release or alias 'nosuch'"),
                      (("promote", "abcd1234", "--to", "staging"), "no release or alias 'abcd1234'"), (("rollback", "nosuch"), "no alias 'nosuch'"),
                      (("promote", v, "--to", "latest"), "'latest' is reserved"), (("diff", v, "nosuch"), "'nosuch'"),
                      (("create", "--from-eval", "no-such-run"), "no-such-run")]:
        out = releases(*args)
        assert out.returncode == 2 and out.stderr.startswith("error: ") and msg in out.stderr, (args, out.stderr)
    assert snapshot(reg.root) == before
    assert releases("promote", v).returncode == 2                                    # --to is required (argparse)


def test_release_of_another_project_home_is_refused(specs, reg, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    other = ReleaseRegistry(elsewhere / "releases", settings=Settings(home=elsewhere, tracker="none"))
    v = other.create(specs[0]).version
    shutil.copytree(other.root, reg.root)
    before = snapshot(reg.root)
    out = releases("promote", v, "--to", "staging")
    assert out.returncode == 2 and f"release {v} was created in project home {elsewhere.resolve()}" in out.stderr, out.stderr
    assert snapshot(reg.root) == before


def test_corrupt_registry_files_are_refused_unchanged(specs, reg):
    a, b = reg.create(specs[0]), reg.create(specs[1])
    reg.promote(a.version, "staging")
    (reg.root / "aliases.json").write_text("{garbage")
    before = snapshot(reg.root)
    for args in (("list",), ("show", "staging"), ("promote", b.version, "--to", "staging"), ("rollback", "staging")):
        out = releases(*args)
        assert out.returncode == 2 and "aliases.json" in out.stderr, (args, out.stderr)
    assert snapshot(reg.root) == before
    (reg.root / "aliases.json").unlink()
    vf = reg.root / "versions" / f"{b.digest}.json"
    rec = read_json(vf); rec["spec"]["retrieval"]["k"] = 9; write_json(vf, rec)      # a hand edit
    before = snapshot(reg.root)
    for args in (("show", b.version), ("promote", b.version, "--to", "staging"), ("list",)):
        out = releases(*args)
        assert out.returncode == 2 and f"{vf}: the spec does not match the file's digest" in out.stderr, (args, out.stderr)
    assert snapshot(reg.root) == before


def test_a_gate_of_another_release_is_no_evidence(specs, reg):
    e_a = evaluated(specs[0])                                                        # passes, but measured release a
    b = reg.create(specs[1])
    before = snapshot(reg.root)
    with pytest.raises(PromotionRefused, match="Evaluate runs of this release: none"): reg.promote(b.version, "production")
    assert find_evidence(b) == [] and snapshot(reg.root) == before
    rel = read_run(e_a).dir / "release.json"                                         # a release.json whose digest is not its spec's
    write_json(rel, {"digest": b.digest, "spec": specs[0]})
    out = releases("promote", b.version, "--to", "production")
    assert out.returncode == 1 and "Evaluate runs of this release: none" in out.stderr, out.stderr
    out = releases("create", "--from-eval", e_a)
    assert out.returncode == 2 and "release.json" in out.stderr and "does not match" in out.stderr, out.stderr
    assert snapshot(reg.root) == before


def test_evaluate_run_without_release_json_is_a_clear_error(specs, reg):
    run = evaluated(specs[0], release=False)
    out = releases("create", "--from-eval", run)
    assert out.returncode == 2 and f"evaluate run {run} recorded no release.json" in out.stderr and "re-run the evaluation" in out.stderr
    other = start_run("train_sft", {}, load_settings(), tracker="none"); other.finish()
    out = releases("create", "--from-eval", other.id)
    assert out.returncode == 2 and "not an evaluate run" in out.stderr
    with pytest.raises(ReleaseError, match="recorded no release.json"): reg.create_from_eval(run)
    assert snapshot(reg.root) == {} and reg.list() == []
