"""IUV and notice numbers (NAV), aux digit 3: pagopa-digest §1."""

import pytest

from portal.ledger import notice_numbers as nn
from portal.ledger.notice_numbers import NoticeNumberError


def test_worked_example():
    number = nn.build("01", 2500000012345)
    assert number.iuv == "01250000001234529"
    assert number.nav == "301250000001234529"
    assert number.nav_grouped == "3012 5000 0001 2345 29"
    assert nn.check_digits("3012500000012345") == "29"
    assert nn.is_valid_nav(number.nav)
    assert nn.nav_from_iuv(number.iuv) == number.nav


def test_segregation_code_may_be_an_int():
    assert nn.build(1, 2500000012345).nav == "301250000001234529"
    assert nn.validate_segregation_code(0) == "00"


@pytest.mark.parametrize("seg", ["00", "01", "12", "45", "46", "80"])
def test_every_built_nav_is_valid(seg):
    bases = [*range(1, 500), 92, 93, 94, 185, 186, 10**12, nn.MAX_BASE - 1, nn.MAX_BASE]
    for base in bases:
        number = nn.build(seg, base)
        assert len(number.nav) == 18
        assert number.nav.isdigit()
        assert len(number.iuv) == 17
        assert number.nav == "3" + number.iuv
        assert number.nav[1:3] == seg
        assert int(number.nav[3:16]) == base
        assert int(number.nav[16:]) == int(number.nav[:16]) % 93
        assert nn.is_valid_nav(number.nav), number.nav


def test_check_digits_are_zero_padded():
    # Find a base whose remainder is below 10 and check the padding.
    base = next(b for b in range(1, 200) if int(f"301{b:013d}") % 93 < 10)
    number = nn.build("01", base)
    assert number.nav[16] == "0"
    assert nn.is_valid_nav(number.nav)


@pytest.mark.parametrize("seg", [47, 81, 85, 90, 96, 97, 98, 99])
def test_reserved_segregation_codes_rejected(seg):
    with pytest.raises(NoticeNumberError, match="riservato"):
        nn.validate_segregation_code(str(seg))
    with pytest.raises(NoticeNumberError):
        nn.validate_segregation_code(seg)
    with pytest.raises(NoticeNumberError):
        nn.build(str(seg), 1)


@pytest.mark.parametrize("seg", ["00", "46", "80", "48"])
def test_allowed_segregation_codes(seg):
    assert nn.validate_segregation_code(seg) == seg


@pytest.mark.parametrize("seg", ["1", "001", "ab", "", " 4", "4a", 100])
def test_malformed_segregation_codes_rejected(seg):
    with pytest.raises(NoticeNumberError, match="due cifre"):
        nn.validate_segregation_code(seg)


@pytest.mark.parametrize("base", [0, -1, 10**13, 10**14])
def test_base_out_of_range(base):
    with pytest.raises(NoticeNumberError, match="fuori intervallo"):
        nn.build("01", base)


@pytest.mark.parametrize(
    "nav",
    [
        "301250000001234528",  # wrong check digits
        "302012387654312384",  # the Checkout OpenAPI example: wrong check digits
        "30125000000123452",  # 17 digits
        "3012500000012345290",  # 19 digits
        "001000000000012370",  # aux 0: valid legacy number but not ours
        "30125000000123452X",
        "",
    ],
)
def test_invalid_navs(nav):
    assert not nn.is_valid_nav(nav)


def test_format_nav_groups_of_four():
    assert nn.format_nav("301250000001234529") == "3012 5000 0001 2345 29"
    assert nn.format_nav("") == ""


@pytest.mark.parametrize(
    "typed",
    ["3012 5000 0001 2345 29", " 301250000001234529 ", "3012-5000-0001-2345-29", "3012\u00a05000 0001 2345 29"],
)
def test_normalize_nav(typed):
    assert nn.normalize_nav(typed) == "301250000001234529"


def test_normalize_nav_of_nothing():
    assert nn.normalize_nav(None) == ""
    assert nn.normalize_nav("") == ""


def test_reserved_set_matches_the_spec():
    assert {47, *range(81, 100)} == nn.RESERVED_SEGREGATION_CODES
