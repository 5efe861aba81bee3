"llmops_nb.pii and llmops_nb.pii_rules through the installed package: checksums, detection, redaction, documents, bad input, offline."
import random, socket, subprocess, sys, time
from collections import Counter
import pytest
from llmops_nb.data import Document, clean_text
from llmops_nb.pii import RULE_ENTITIES, SUPPORTED_ENTITIES, analyzer, find_pii, hash_token, redact, redact_documents, redact_pii
from llmops_nb.pii_rules import iban_valid, ipv4_valid, ipv6_valid, luhn_valid, offline_tld_extractor, ssn_valid


def entities_of(text, **kwargs):
    "(entity, text) pairs found in `text`."
    return [(s.entity, s.text) for s in find_pii(text, **kwargs)]


def assert_consistent(text, spans):
    "Offsets point at the span text, spans are sorted and disjoint, scores and entities are valid."
    assert spans == sorted(spans, key=lambda s: s.start)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
    for s in spans:
        assert text[s.start:s.end] == s.text and 0 <= s.score <= 1 and s.entity in SUPPORTED_ENTITIES


# --- checksums ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("number", ["4111111111111111", "4111 1111 1111 1111", "378282246310005", "5555-5555-5555-4444"])
def test_luhn_valid(number):
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4111111111111112", "378282246310006", "1234567890123456"])
def test_luhn_invalid(number):
    assert not luhn_valid(number)


def test_credit_card_detection_uses_luhn():
    assert ("CREDIT_CARD", "4111 1111 1111 1111") in entities_of("Please charge my card 4111 1111 1111 1111 today.")
    assert not any(e == "CREDIT_CARD" for e, _ in entities_of("Please charge my card 4111 1111 1111 1112 today."))


@pytest.mark.parametrize("iban", ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "fr1420041010050500013m02606",
                                  "NO9386011117947"])
def test_iban_valid(iban):
    assert iban_valid(iban)


@pytest.mark.parametrize("iban", ["GB82WEST12345698765433",   # wrong check digits
                                  "DE8937040044053201300",    # wrong length for DE
                                  "XX82WEST12345698765432",   # unknown country
                                  "GB82-WEST"])
def test_iban_invalid(iban):
    assert not iban_valid(iban)


def test_iban_detection_uses_mod97():
    assert ("IBAN", "GB82 WEST 1234 5698 7654 32") in entities_of("Transfer to GB82 WEST 1234 5698 7654 32 please.")
    assert not any(e == "IBAN" for e, _ in entities_of("Transfer to GB82WEST12345698765433."))


def test_ssn_and_ip_validators():
    assert ssn_valid("123-45-6789")
    assert not ssn_valid("666-45-6789") and not ssn_valid("900-12-3456") and not ssn_valid("123-00-6789")
    assert ipv4_valid("192.168.0.1") and not ipv4_valid("256.1.1.1")
    assert ipv6_valid("2001:db8::1") and not ipv6_valid("12:30:45")


# --- detection ---------------------------------------------------------------------------------------------------------

def test_detects_common_entities():
    text = ("My name is Anna Berg, email anna.berg@example.com, phone +1 (312) 555-0147, "
            "SSN 123-45-6789, IP 10.1.2.3, and I live at 12 Main Street, Springfield.")
    assert {"PERSON", "EMAIL", "PHONE", "US_SSN", "IP_ADDRESS", "STREET_ADDRESS"} <= {e for e, _ in entities_of(text)}


def test_spans_are_consistent_and_sorted():
    text = "Call Bob Stone at 020 7946 0958 or bob@example.org; Bob lives in Paris."
    spans = find_pii(text)
    assert_consistent(text, spans)
    assert {("PHONE", "020 7946 0958"), ("EMAIL", "bob@example.org")} <= {(s.entity, s.text) for s in spans}
    assert [s.text for s in spans if s.entity == "PERSON"][-1] == "Bob"             # the second mention, on its own


def test_entity_filter_and_threshold():
    text = "Mail jo@example.com or call 020 7946 0958, Jo Smith."
    assert entities_of(text, entities=["EMAIL"]) == [("EMAIL", "jo@example.com")]
    with pytest.raises(ValueError, match=r"unsupported entities \['NOT_AN_ENTITY'\]; supported: AGE, CREDIT_CARD"):
        find_pii(text, entities=["NOT_AN_ENTITY"])
    strict = find_pii(text, threshold=0.99)
    assert {(s.start, s.end) for s in strict} <= {(s.start, s.end) for s in find_pii(text)}
    assert find_pii(text, entities=[]) == []


def test_rule_entities_match_the_full_analyzer():
    "Asking only for rule-found entities skips spaCy but reports exactly what the full analyzer reports for them."
    texts = ["Card 4111 1111 1111 1111, mail ops@example.com, call +44 20 7946 0958 or visit https://shop.example.com/returns",
             "SSN 123-45-6789 from 10.0.0.1; IBAN DE89 3704 0044 0532 0130 00; I am 42 years old; ZIP 94107",
             "Nothing personal here: the kettle costs 49.99 and ships in 3 days."]
    for t in texts:
        test = [s for s in find_pii(t) if s.entity in RULE_ENTITIES]
        assert find_pii(t, entities=list(RULE_ENTITIES)) == test, t

def test_deterministic():
    text = "Dear Mr. Olsen, your card 4111111111111111 was sent to 5 Elm Road, Leeds LS1 4AP."
    assert find_pii(text) == find_pii(text)


@pytest.mark.parametrize("text", [
    "Set the timeout to 30 seconds and the retry count to 5.",
    "Please restart the server after installing version 3.2.1 of the package.",
    "Our team scored 98 points in the final game, beating the previous record of 87.",
])
def test_benign_text_has_no_pii(text):
    assert find_pii(text) == []


# --- edge cases and bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_and_blank(text):
    assert find_pii(text) == []
    assert redact_pii(text) == text


@pytest.mark.parametrize("bad, name", [(None, "NoneType"), (b"anna@example.com", "bytes"), (42, "int"), (["a"], "list")])
def test_wrong_text_type_is_a_clear_type_error(bad, name):
    with pytest.raises(TypeError, match=f"find_pii: text must be a str, got {name}"):
        find_pii(bad)
    with pytest.raises(TypeError, match=f"redact: text must be a str, got {name}"):
        redact_pii(bad)
    if isinstance(bad, bytes):
        with pytest.raises(TypeError, match=r"decode bytes first"):
            find_pii(bad)


def test_bad_entities_and_threshold():
    with pytest.raises(TypeError, match=r"entities must be a list of names such as \['EMAIL'\], not the str 'EMAIL'"):
        find_pii("x", entities="EMAIL")
    for threshold in (1.5, -0.1, "high", None, True):
        with pytest.raises(ValueError, match="threshold must be a number in"):
            find_pii("x", threshold=threshold)
    with pytest.raises(ValueError, match="mode must be one of"):
        redact_pii("anna@example.com", mode="shred")


def test_binary_junk_and_control_characters():
    rng = random.Random(0)
    junk = bytes(rng.randrange(256) for _ in range(20_000)).decode("latin-1")      # every code point 0-255, NULs included
    text = junk[:10_000] + " write to jo@example.com \x00\x1b[31m\x07 " + junk[10_000:]
    spans = find_pii(text)
    assert_consistent(text, spans)
    assert ("EMAIL", "jo@example.com") in [(s.entity, s.text) for s in spans]
    assert find_pii("\x00\x01\x02\x7f\ufffd\ud800") == []                         # a lone surrogate too
    assert "jo@example.com" not in redact_pii(text)


def test_mixed_scripts_and_zero_width_characters():
    text = ("Пишите на anna\u200b.berg@exam\u00adple.com или звоните +7 495 123\u200d45 67. 山田太郎さん、"
            "call 020\u200b 7946 0958. مرحبا 👩\u200d👩\u200d👧 Ｆｕｌｌｗｉｄｔｈ.")
    spans = find_pii(text)
    assert_consistent(text, spans)
    found = {(s.entity, s.text) for s in spans}
    assert ("EMAIL", "anna\u200b.berg@exam\u00adple.com") in found                # hidden characters do not hide the value
    assert ("PHONE", "020\u200b 7946 0958") in found
    redacted = redact_pii(text)
    assert "berg" not in redacted and "7946" not in redacted and "👩\u200d👩\u200d👧" in redacted
    assert ("EMAIL", "anna.berg@example.com") in entities_of(clean_text(text))   # what clean_documents would pass on


def test_non_ascii_text():
    text = ("Zoë Ångström wohnt in der Hauptstraße 5, 80331 München. "
            "Ηλεκτρονικό ταχυδρομείο: zoë.ångström@example.de ☎ +49 89 1234 5678 🙂")
    spans = find_pii(text)
    assert_consistent(text, spans)
    found = {(s.entity, s.text) for s in spans}
    assert ("EMAIL", "zoë.ångström@example.de") in found and ("PHONE", "+49 89 1234 5678") in found
    redacted = redact_pii(text)
    assert "zoë.ångström@example.de" not in redacted and "🙂" in redacted


def test_one_megabyte_text():
    line = ("Dear Maria Keller, your parcel ships to 44 Linden Street, Springfield, IL 62704. "
            "Call +1 (312) 555-0147 or write to maria.keller@example.com. "
            "The weather was mild and the meeting ran long.\n")
    text = line * (1_000_000 // len(line) + 1)
    begin = time.perf_counter()
    spans = find_pii(text)
    elapsed = time.perf_counter() - begin
    print(f"\n1 MB text: {elapsed:.1f} s, {len(spans)} spans")
    assert len([s for s in spans if s.entity == "EMAIL"]) == text.count("maria.keller@example.com")
    assert all(text[s.start:s.end] == s.text for s in spans[-50:])               # offsets hold across chunks
    assert elapsed < 300


# --- redaction ---------------------------------------------------------------------------------------------------------

TEXT = ("Anna Berg (anna.berg@example.com) met Bob Stone. Later ANNA.BERG@example.com "
        "wrote to bob.stone@example.com and Anna Berg paid with 4111 1111 1111 1111, "
        "then again with 4111-1111-1111-1111.")


def test_mask_mode():
    out = redact_pii(TEXT, mode="mask")
    assert "<EMAIL>" in out and "<PERSON>" in out and "<CREDIT_CARD>" in out
    assert "anna.berg" not in out.lower() and "4111" not in out


def test_pseudonym_same_value_same_placeholder():
    result = redact(TEXT, mode="pseudonym")
    out = result.text
    assert out.count("<EMAIL_1>") == 2 and out.count("<EMAIL_2>") == 1
    assert out.count("<CREDIT_CARD_1>") == 2
    assert result.replacements["<EMAIL_2>"] == "bob.stone@example.com"
    assert out.index("<PERSON_1>") < out.index("<PERSON_2>")


def test_hash_mode_is_stable_and_salted():
    first = redact_pii(TEXT, mode="hash", salt="s1")
    assert first == redact_pii(TEXT, mode="hash", salt="s1")
    assert first != redact_pii(TEXT, mode="hash", salt="s2")
    email_tokens = {t for t in first.split() if t.startswith("<EMAIL_") or t.startswith("(<EMAIL_")}
    assert len({t.strip("()") for t in email_tokens}) == 2
    assert hash_token("EMAIL", "A@B.com", "k") == hash_token("EMAIL", "a@b.com ", "k")


def test_invalid_mode():
    with pytest.raises(ValueError):
        redact_pii("anna@example.com", mode="shred")


# --- documents ---------------------------------------------------------------------------------------------------------

def test_redact_documents():
    docs = [Document("a", "Anna Berg wrote from anna@example.com; later Anna Berg wrote again.", {"source": "a.txt", "tags": ["x"]}),
            Document("b", "Dear Bob Stone, call +44 20 7946 0958 or +44-20-7946-0958.", {"source": "b.txt"}),
            Document("c", "Nothing personal here."), Document("d", "")]
    red, counts = redact_documents(docs, mode="pseudonym")
    assert [d.id for d in red] == ["a", "b", "c", "d"]
    assert red[0].text == "<PERSON_1> wrote from <EMAIL_1>; later <PERSON_1> wrote again."
    assert red[1].text == "Dear <PERSON_1>, call <PHONE_1> or <PHONE_1>."           # same value, same placeholder
    assert red[0].metadata == {"source": "a.txt", "tags": ["x"], "pii": {"EMAIL": 1, "PERSON": 2}}
    assert red[1].metadata["pii"] == {"PERSON": 1, "PHONE": 2}
    assert (red[2].text, red[2].metadata, red[3].text) == ("Nothing personal here.", {"pii": {}}, "")
    assert counts == Counter({"PERSON": 3, "PHONE": 2, "EMAIL": 1})
    red[0].metadata["tags"].append("y")
    assert docs[0].metadata == {"source": "a.txt", "tags": ["x"]} and docs[0].text.startswith("Anna Berg")   # inputs untouched
    hashed, _ = redact_documents(docs[:2], mode="hash", salt="k", entities=["PERSON"])
    assert "anna@example.com" in hashed[0].text and hashed[0].metadata["pii"] == {"PERSON": 2}


def test_redact_documents_bad_input():
    with pytest.raises(TypeError, match="item 1 is a str, expected Document"):
        redact_documents([Document("a", "x"), "text"])
    with pytest.raises(TypeError, match="docs must be a list of Documents"):
        redact_documents(Document("a", "x"))
    with pytest.raises(ValueError, match="redact_documents: mode must be one of"):
        redact_documents([], mode="shred")
    with pytest.raises(TypeError, match="redact_documents: document 'a': text must be a str, got NoneType"):
        redact_documents([Document("a", None)])
    assert redact_documents([]) == ([], Counter())


# --- offline and import cost -------------------------------------------------------------------------------------------

def test_import_is_cheap():
    code = "import sys, llmops_nb.pii; print(sorted(m for m in ('presidio_analyzer', 'spacy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"                    # Presidio, spaCy and torch load on the first find_pii call, not on import


def test_no_network_access(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    offline_tld_extractor.cache_clear()
    analyzer.cache_clear()
    begin = time.perf_counter()
    found = entities_of("Write to jane.doe@example.co.uk or see https://www.example.org/x, or ops@sub.example.com.")
    assert time.perf_counter() - begin < 30
    assert ("EMAIL", "jane.doe@example.co.uk") in found and ("EMAIL", "ops@sub.example.com") in found
    assert ("URL", "https://www.example.org/x") in found
    assert attempts == []


def test_hash_without_salt_uses_a_private_random_installation_salt(tmp_path, monkeypatch):
    "No PII_HASH_SALT: a random salt made once per installation (cache folder, mode 0600), never a public constant; 64-bit tokens."
    import os, re, stat
    from llmops_nb.pii import hash_salt
    import llmops_nb.pii as pii
    monkeypatch.delenv("PII_HASH_SALT", raising=False)
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "a")); monkeypatch.delenv("LLMOPS_CACHE_DIR", raising=False)
    monkeypatch.delenv("LLMOPS_PROFILE", raising=False)
    salt = hash_salt()
    path = tmp_path / "a" / ".cache" / "llmops" / "pii_hash_salt"
    assert path.read_text() == salt and len(salt) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not hasattr(pii, "DEFAULT_SALT") and hash_salt() == salt
    out = redact_pii("Mail anna@example.com today", mode="hash")
    token = re.search(r"<EMAIL_([0-9a-f]+)>", out).group(1)
    assert len(token) == 16 and token == hash_token("EMAIL", "anna@example.com", salt)
    assert token != hash_token("EMAIL", "anna@example.com", "llmops-nb-pii-v1")[:16]      # not the old public constant
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "b"))
    assert hash_salt() != salt                                                              # another installation, another salt
    monkeypatch.setenv("PII_HASH_SALT", "from-the-secret-store")
    assert hash_salt() == "from-the-secret-store"
    path.chmod(0o644); monkeypatch.delenv("PII_HASH_SALT"); monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "a"))
    assert hash_salt() == salt and stat.S_IMODE(path.stat().st_mode) == 0o600              # permissions are repaired
    path.write_text("short")
    with pytest.raises(ValueError, match="shorter than 32 characters"):
        hash_salt()


@pytest.mark.parametrize("text", [
    "Please upgrade to Version 10.2.0.1 today.", "Fixed in build 4.12.0.255, release notes attached.",
    "Call us about ticket #20260311-0042.", "Please contact support about ticket #20260311-0042",
    "Invoice no. 555-123-4567 is due on Friday.", "Your order #4412-8876-2210 has shipped, call us with questions.",
    "Reference: 20251130-17 (call the desk if it is late).",
])
def test_business_numbers_are_not_pii(text):
    assert [(s.entity, s.text) for s in find_pii(text) if s.entity in ("IP_ADDRESS", "PHONE")] == []


@pytest.mark.parametrize("text,entity,value", [
    ("The server is at 10.2.0.1 now.", "IP_ADDRESS", "10.2.0.1"), ("Call me at 555-123-4567.", "PHONE", "555-123-4567"),
    ("call the order desk on 555-123-4567", "PHONE", "555-123-4567"), ("My version of events: call 555-123-4567", "PHONE", "555-123-4567"),
])
def test_real_ips_and_phones_are_still_found(text, entity, value):
    assert (entity, value) in [(s.entity, s.text) for s in find_pii(text)]
