"Property tests of the guards: no Unicode text makes them raise, verdicts are consistent, and redaction never leaks the redacted value."
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
from hypothesis import HealthCheck, given, settings, strategies as st
from llmops_nb.guard import ACTIONS, QUARANTINED, load_policy, normalize, scan_document, scan_input, scan_output

ANY = st.text(st.characters(blacklist_categories=()), max_size=300)          # every code point, lone surrogates included
WORDS = st.lists(st.sampled_from(["the", "kettle", "ignore", "please", "système", "ду", "🙂", "\u200b", "e-mail", "1234", "|", "\n", "AI,"]),
                 max_size=30).map(" ".join)
TEXT = st.one_of(ANY, WORDS)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
POLICY = load_policy("default")


def consistent(v, refusal: str):
    assert v.action in ACTIONS and 0 <= v.score <= 1
    assert v.allowed == (v.action in ("allow", "redact"))
    if v.action == "block": assert any(f.action == "block" for f in v.findings) and v.text == refusal
    else: assert all(f.action != "block" for f in v.findings)


@FAST
@given(TEXT)
def test_normalize_never_raises(text):
    n = normalize(text)
    assert isinstance(n.text, str) and all(isinstance(t, str) for t in n.texts)


@FAST
@given(TEXT)
def test_scan_input_never_raises_and_is_consistent(text):
    v = scan_input(text, POLICY)
    consistent(v, POLICY.refusal)
    w = scan_input(text, POLICY)
    assert (w.action, w.score, [f.reason for f in w.findings], w.text) == (v.action, v.score, [f.reason for f in v.findings], v.text)


@FAST
@given(TEXT, st.lists(TEXT, max_size=2))
def test_scan_output_never_raises_and_is_consistent(text, context):
    consistent(scan_output(text, context=context, policy=POLICY), POLICY.refusal)


@FAST
@given(st.one_of(TEXT, st.lists(WORDS, min_size=1, max_size=40).map("\n".join)))
def test_scan_document_never_raises_and_is_consistent(text):
    v = scan_document(text, POLICY)
    consistent(v, QUARANTINED)
    for f in v.findings:
        if f.span is not None: assert 0 <= f.span[0] <= f.span[1] <= len(text)
    assert scan_document(text, POLICY).action == v.action


ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
EMAIL = st.tuples(st.text("abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10), st.sampled_from(["example.com", "mail.example.org", "kestrel-home.de"])
                  ).map(lambda t: f"{t[0]}@{t[1]}")
SSN = st.tuples(st.integers(1, 665), st.integers(1, 99), st.integers(1, 9999)).map(lambda t: f"{t[0]:03d}-{t[1]:02d}-{t[2]:04d}")
TOKEN = st.one_of(st.text(ALNUM, min_size=36, max_size=36).map(lambda s: "ghp_" + s),
                  st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(lambda s: "AKIA" + s))
AROUND = st.text(st.characters(blacklist_categories=()), max_size=80)


@FAST
@given(AROUND, st.one_of(EMAIL, SSN), AROUND)
def test_input_redaction_never_leaks_personal_data(before, value, after):
    v = scan_input(f"{before} {value} {after}", POLICY)
    assert value not in v.text


@FAST
@given(AROUND, TOKEN, AROUND)
def test_output_redaction_never_leaks_secrets(before, secret, after):
    v = scan_output(f"{before} Use {secret} to log in. {after}", policy=POLICY)
    assert secret not in v.text
