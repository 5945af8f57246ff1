"""How the portal words a span of time, or an amount of money, everywhere it shows one."""

from __future__ import annotations

import pytest

from portal.formatting import amount, duration


@pytest.mark.parametrize(
    "seconds, label",
    [(0, "0 s"), (59.9, "59 s"), (60, "1 min"), (633, "10 min"), (7500, "2 h 05 min"), (90000, "1 d 1 h"), (-5, "0 s")],
)
def test_duration_reads_as_people_say_it(seconds, label):
    assert duration(seconds) == label


@pytest.mark.parametrize("nonsense", [None, "", "soon"])
def test_duration_of_nonsense_is_empty(nonsense):
    assert duration(nonsense) == ""


@pytest.mark.parametrize(
    "value, label",
    [("15155.94", "15,155.94"), (100, "100.00"), ("-1234.5", "-1,234.50"), ("1000000", "1,000,000.00"), (None, "None"),
     ("NaN", "NaN"), ("lots", "lots")],
)  # fmt: skip
def test_amounts_read_grouped_with_two_decimals_and_anything_else_as_it_came(value, label):
    assert amount(value) == label
