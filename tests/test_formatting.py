"""Italian formats shown in the back office."""

import pytest

from portal.formatting import format_size


@pytest.mark.parametrize(("size", "text"), [
    (None, "0 byte"), (999, "999 byte"), (500_800, "500,8 kB"), (1_234_567, "1,2 MB"), (9_876_543_210, "9,9 GB"),
])
def test_format_size(size, text):
    assert format_size(size) == text
