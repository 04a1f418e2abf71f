"""Tests of the API key format, entropy, checksum and hashing (pure: no database)."""

import hashlib
import hmac
import math
import re
import string
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotate import keys
from rotate.keys import key_digest, key_generate, key_matches, key_prefix
from tests.rotate.envelopes import KEY_PATTERN

BASE62 = set(string.ascii_letters + string.digits)
# Generated once per run; Hypothesis picks among them.
SAMPLE_KEYS = [key_generate().raw_key for _ in range(50)]


def _secret(raw_key: str) -> str:
    """The 33 random characters after `rp_<prefix>_`, without the checksum."""
    return raw_key[len("rp_") + 12 + 1 : -6]


def test_key_generate_matches_the_contract_format() -> None:
    generated = key_generate()

    assert re.fullmatch(KEY_PATTERN, generated.raw_key)
    assert generated.raw_key.startswith(f"rp_{generated.prefix}_")
    assert re.fullmatch(r"[0-9A-Za-z]{12}", generated.prefix)
    assert len(_secret(generated.raw_key)) == 33


def test_key_generate_secret_has_at_least_190_bits() -> None:
    # given: many keys, so every symbol the generator can emit shows up
    secrets_seen = [_secret(key_generate().raw_key) for _ in range(2000)]

    # when: the entropy is computed from the observed alphabet and length
    alphabet = set("".join(secrets_seen))
    lengths = {len(secret) for secret in secrets_seen}

    # then: the declared and the actual entropy both reach 190 bits
    assert alphabet == BASE62
    assert lengths == {keys.SECRET_LENGTH}
    assert len(set(keys.ALPHABET)) == len(keys.ALPHABET) == 62
    assert keys.SECRET_BITS >= 190
    assert keys.SECRET_LENGTH * math.log2(len(alphabet)) >= keys.SECRET_BITS


def test_key_generate_keys_and_prefixes_are_unique() -> None:
    generated = [key_generate() for _ in range(10_000)]

    assert len({key.raw_key for key in generated}) == len(generated)
    assert len({key.prefix for key in generated}) == len(generated)
    assert len({_secret(key.raw_key) for key in generated}) == len(generated)


def test_key_prefix_accepts_a_generated_key() -> None:
    generated = key_generate()

    assert key_prefix(generated.raw_key) == generated.prefix


@given(
    raw_key=st.sampled_from(SAMPLE_KEYS),
    position=st.integers(min_value=0, max_value=len(SAMPLE_KEYS[0]) - 1),
    replacement=st.characters(),
)
def test_key_prefix_rejects_any_single_character_change(
    raw_key: str, position: int, replacement: str
) -> None:
    # given: one character of a valid key replaced by a different one
    if raw_key[position] == replacement:
        replacement = "A" if raw_key[position] != "A" else "B"
    mutated = raw_key[:position] + replacement + raw_key[position + 1 :]

    # when / then: the checksum (or the format) rejects it, with no database at hand
    assert key_prefix(mutated) is None


@given(raw_key=st.sampled_from(SAMPLE_KEYS), position=st.integers(min_value=0, max_value=54))
def test_key_prefix_rejects_a_dropped_or_doubled_character(raw_key: str, position: int) -> None:
    dropped = raw_key[:position] + raw_key[position + 1 :]
    doubled = raw_key[:position] + raw_key[position] + raw_key[position:]

    assert key_prefix(dropped) is None
    assert key_prefix(doubled) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "rp_",
        "Bearer",
        "rp_" + "A" * 12 + "_" + "B" * 39,
        "xx_" + "A" * 12 + "_" + "B" * 39,
        " " + SAMPLE_KEYS[0],
        SAMPLE_KEYS[0] + "\n",
        SAMPLE_KEYS[0].upper(),
        SAMPLE_KEYS[0][:-1] + "\u0661",  # an Arabic-Indic digit: not ASCII base62
    ],
    # Stable ids: the sample keys are random, and xdist workers must collect the same names.
    ids=[
        "empty",
        "namespace only",
        "scheme",
        "made-up checksum",
        "wrong namespace",
        "leading blank",
        "trailing newline",
        "upper-cased",
        "non-ascii digit",
    ],
)
def test_key_prefix_rejects_malformed_values(value: str) -> None:
    assert key_prefix(value) is None


def test_keys_module_imports_only_the_standard_library() -> None:
    code = (
        "import sys, rotate.keys; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'rest_framework'}); "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={}
    )

    assert result.stdout.strip() == ""


def test_key_digest_is_sha256_hex_without_pepper() -> None:
    raw_key = SAMPLE_KEYS[0]

    digest = key_digest(raw_key)

    assert digest == hashlib.sha256(raw_key.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_key_digest_is_hmac_sha256_with_pepper() -> None:
    raw_key = SAMPLE_KEYS[0]

    digest = key_digest(raw_key, pepper="pepper")

    assert digest == hmac.new(b"pepper", raw_key.encode(), hashlib.sha256).hexdigest()
    assert digest != key_digest(raw_key)
    assert digest != key_digest(raw_key, pepper="other pepper")


@pytest.mark.parametrize(
    ("presented", "pepper", "expected"),
    [
        (SAMPLE_KEYS[0], "", True),
        (SAMPLE_KEYS[1], "", False),
        (SAMPLE_KEYS[0], "pepper", False),
    ],
    ids=["same key", "other key", "other pepper"],
)
def test_key_matches_compares_against_the_stored_digest(
    presented: str, pepper: str, expected: bool
) -> None:
    stored = key_digest(SAMPLE_KEYS[0])

    assert key_matches(presented, stored, pepper=pepper) is expected


def test_key_matches_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: compare_digest spied on, and forced to say "different"
    calls: list[tuple[str, str]] = []

    def spy(left: str, right: str) -> bool:
        calls.append((left, right))
        return False

    monkeypatch.setattr("rotate.keys.hmac.compare_digest", spy)
    raw_key = SAMPLE_KEYS[0]
    stored = key_digest(raw_key)

    # when: the right key is presented
    matched = key_matches(raw_key, stored)

    # then: the answer came from compare_digest, over the two digests
    assert matched is False
    assert calls == [(stored, stored)]
