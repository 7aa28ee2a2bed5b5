"""loupe.base.text: the one natural file-name order and the one START:END span parser (used by the
image and DICOM sources, ``loupe analyze``'s folder expansion, the window and the fitters)."""

from __future__ import annotations

import itertools

import pytest

from loupe.base.text import natural_key, parse_span


def test_numbers_sort_by_value_and_case_is_ignored():
    names = ["img10.png", "IMG2.png", "img1.png", "img02b.png", "a.png", "img2a.png"]
    assert sorted(names, key=natural_key) == ["a.png", "img1.png", "IMG2.png", "img2a.png", "img02b.png", "img10.png"]


def test_names_equal_but_for_zeros_or_case_have_one_order_whatever_the_listing_order():
    """A folder lists its files in an order that differs between file systems: ties must not
    leave the order to it."""
    names = ["a01.png", "a1.png", "A1.png", "a001.png"]
    orders = {tuple(sorted(p, key=natural_key)) for p in itertools.permutations(names)}
    assert len(orders) == 1


def test_a_name_of_superscript_digits_does_not_crash_the_sort():
    """'²'.isdigit() is True but int('²') raises: superscripts are text, not numbers."""
    names = ["²", "x²", "1", "10", "2"]
    assert sorted(names, key=natural_key) == ["1", "2", "10", "x²", "²"]


def test_unicode_decimal_digits_count_as_numbers():
    assert sorted(["f\u0661\u0660", "f9"], key=natural_key) == ["f9", "f\u0661\u0660"]  # Arabic-Indic 10


def test_only_the_file_name_counts():
    assert natural_key("/z/dir9/img2.png") < natural_key("/a/dir10/img10.png")


@pytest.mark.parametrize(("text", "want"), [
    ("2:4.5", (2.0, 4.5)), (":3", (0.0, 3.0)), ("1:", (1.0, None)), (":", (0.0, None)),
    (" 0 : 10 ", (0.0, 10.0)), ("1e1:2e1", (10.0, 20.0)),
])
def test_span(text, want):
    assert parse_span(text) == want


@pytest.mark.parametrize(("text", "message"), [
    ("4:2", "need 0 <= START < END"),
    ("3:3", "need 0 <= START < END"),
    ("-1:2", "need 0 <= START < END"),
    ("2", "a span is START:END in seconds"),
    ("", "a span is START:END in seconds"),
    ("1:2:3", "a span is START:END in seconds"),
    ("a:b", "a span is START:END in seconds"),
    ("1,5:3", "a span is START:END in seconds"),
    ("nan:5", "finite"),
    ("0:inf", "finite"),
    ("inf:", "finite"),
])
def test_a_bad_span_is_one_line_naming_it(text, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_span(text)
    assert "\n" not in str(e.value) and repr(text) in str(e.value)
