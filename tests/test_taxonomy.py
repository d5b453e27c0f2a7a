"""The pagoPA taxonomy of collection services (vendored v33 file)."""

from datetime import date
from pathlib import Path

import pytest

from portal.ledger import taxonomy
from portal.ledger.taxonomy import TaxonomyError

ROOT = Path(__file__).resolve().parent.parent
SHARED_TAXONOMY = ROOT.parent / "shared" / "specs" / "pagopa" / "taxonomy" / "tassonomia.json"


@pytest.mark.parametrize("code", ["9/0101101IM/", "9/0102100SA/", "9/0101100IM/", "9/0101102TS/"])
def test_known_codes_are_valid(code):
    assert taxonomy.validate(code) == code


@pytest.mark.parametrize("prefix", ["6", "7", "8"])
def test_rtp_opt_out_prefixes_are_accepted(prefix):
    code = f"{prefix}/0101101IM/"
    assert taxonomy.validate(code) == code


def test_code_is_trimmed_and_upper_cased():
    assert taxonomy.validate("  9/0101101im/ ") == "9/0101101IM/"


@pytest.mark.parametrize(
    "code",
    ["0101101IM", "9/0101101IM", "9/0101101XX/", "5/0101101IM/", "9/010110IM/", "9//", "", None],
)
def test_malformed_codes_rejected(code):
    with pytest.raises(TaxonomyError, match="formato atteso"):
        taxonomy.validate(code)


@pytest.mark.parametrize("code", ["9/0101199IM/", "9/9999999AP/", "8/0101199IM/"])
def test_unknown_codes_rejected(code):
    with pytest.raises(TaxonomyError, match="non esiste"):
        taxonomy.validate(code)


def _expired():
    today = date.today()
    return sorted(e.code for e in taxonomy.load().values() if e.valid_to <= today)


def test_expired_code_rejected():
    expired = _expired()
    # v33 has rows whose DATA FINE VALIDITA is long past (9/0301119SP/ ended in 2022).
    assert "9/0301119SP/" in expired
    for code in expired:
        with pytest.raises(TaxonomyError, match="non è più in vigore"):
            taxonomy.validate(code)
        with pytest.raises(TaxonomyError, match="non è più in vigore"):
            taxonomy.validate("8" + code[1:])


def test_validity_is_checked_on_the_given_day():
    assert taxonomy.validate("9/0301119SP/", on=date(2021, 6, 1)) == "9/0301119SP/"
    with pytest.raises(TaxonomyError):
        taxonomy.validate("9/0101101IM/", on=date(2080, 1, 1))


def test_dates_are_read_month_first():
    """The file writes mm/dd/yyyy ("02/15/2021"): read day first, a row would end before it starts."""
    entries = taxonomy.load()
    assert all(e.valid_from < e.valid_to for e in entries.values())
    assert entries["9/0115119AP/"].valid_from == date(2021, 5, 3)
    assert entries["9/0115119AP/"].valid_to == date(2021, 12, 1)


def test_file_loads_every_row():
    entries = taxonomy.load()
    assert len(entries) == 623
    assert all(taxonomy.CODE_RE.match(code) and code.startswith("9/") for code in entries)


def test_choices_for_comuni():
    choices = taxonomy.choices("01")
    codes = [e.code for e in choices]
    assert codes == sorted(codes)
    assert "9/0101101IM/" in codes
    assert all(code[2:4] == "01" for code in codes)
    assert not set(codes) & set(_expired())


def test_vendored_file_is_the_official_copy():
    if not SHARED_TAXONOMY.exists():
        pytest.skip(f"{SHARED_TAXONOMY} not present")
    assert taxonomy.DEFAULT_FILE.read_bytes() == SHARED_TAXONOMY.read_bytes()
