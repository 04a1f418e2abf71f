"""Contract §5 entry names: the page's example, the known traps, and properties."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generations.models import Generation
from generations.plans import archive_entry_names, archive_filename

DEVICE_NAMES = {"CON", "PRN", "AUX", "NUL"} | {f"{d}{n}" for d in ("COM", "LPT") for n in range(10)}
NAME_RE = re.compile(r"[A-Za-z0-9_-]+\.mp4")


def generations(*pairs: tuple[int, str]) -> list[Generation]:
    return [Generation(pk=pk, external_id=external_id) for pk, external_id in pairs]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        # the page's own example
        ([(4983, "mug-2"), (4982, "mug-2")], ["mug-2.mp4", "mug-2-4982.mp4"]),
        ([(1, "A"), (2, "a")], ["A.mp4", "a-2.mp4"]),
        ([(5, "a"), (7, "a-1"), (1, "a")], ["a.mp4", "a-1.mp4", "a-1-2.mp4"]),
        ([(9, "x"), (9, "x")], ["x.mp4", "x-9.mp4"]),
        ([(3, "x"), (3, "x"), (3, "x")], ["x.mp4", "x-3.mp4", "x-3-2.mp4"]),
        ([(12, "CON")], ["CON-12.mp4"]),
        (
            [(12, "con"), (13, "Lpt9"), (14, "COM0"), (15, "nul.txt")],
            ["con-12.mp4", "Lpt9-13.mp4", "COM0-14.mp4", "nul_txt.mp4"],
        ),
        ([(4, ""), (5, "")], ["generation-4.mp4", "generation-5.mp4"]),
        ([(4, "généré 1/2"), (5, "../../etc/passwd")], ["g_n_r__1_2.mp4", "______etc_passwd.mp4"]),
        ([(6, "generation-7"), (7, "")], ["generation-7.mp4", "generation-7-7.mp4"]),
    ],
)
def test_archive_entry_names_examples(pairs, expected):
    assert archive_entry_names(generations(*pairs)) == expected


def test_archive_entry_names_cuts_long_external_id_to_100():
    [name] = archive_entry_names(generations((1, "x" * 300)))
    assert name == "x" * 100 + ".mp4"
    names = archive_entry_names(generations((1, "x" * 300), (2, "x" * 150)))
    assert names == ["x" * 100 + ".mp4", "x" * 100 + "-2.mp4"]


def test_archive_filename_is_utc_timestamp():
    from datetime import datetime, timedelta, timezone

    moment = datetime(2026, 1, 2, 5, 4, 3, tzinfo=timezone(timedelta(hours=2)))
    assert archive_filename(moment) == "generations-20260102T030403Z.zip"


external_ids = st.one_of(
    st.just(""),
    st.sampled_from(["CON", "con", "a", "A", "a-1", "mug-2", "generation-1", "x" * 150]),
    st.text(max_size=300),
)


@given(st.lists(st.tuples(st.integers(1, 2**63 - 1), external_ids), min_size=1, max_size=100))
def test_archive_entry_names_properties(pairs):
    names = archive_entry_names(generations(*pairs))
    assert len(names) == len(pairs)
    assert len({name.lower() for name in names}) == len(names)  # unique ignoring case
    for name in names:
        assert NAME_RE.fullmatch(name), name
        assert name.removesuffix(".mp4").upper() not in DEVICE_NAMES
        assert len(name) <= 130
    assert archive_entry_names(generations(*pairs)) == names  # deterministic
