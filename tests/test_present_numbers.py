"""One number format per table column (interp.present.numbers) and its use in pages."""

from interp.present.html import Link, Table, table_cells
from interp.present.numbers import MINUS, column_format, fmt_number


def texts(values, percent=False):
    f = column_format(values, percent=percent)
    return [f(v) for v in values]


def test_one_format_down_a_column_of_mixed_magnitudes():
    # the largest value sets the precision; a far smaller one is written at it, not as 6.21e-09
    assert texts([6.21e-09, 0.07018, 0.0]) == ["0.0000", "0.0702", "0.0000"]
    # a column whose largest value needs more than four decimals goes scientific, all of it
    sci = texts([6.21e-09, 0.004, 0.0])
    assert sci == ["6.21e" + MINUS + "09", "4.00e" + MINUS + "03", "0.00e+00"]
    assert texts([2.5e7, 1.0]) == ["2.50e+07", "1.00e+00"]


def test_fixed_decimals_give_the_largest_value_three_digits():
    assert texts([3.837, 1.057, 0.5]) == ["3.84", "1.06", "0.50"]
    assert texts([0.0702, 0.025]) == ["0.0702", "0.0250"]
    assert texts([402.3, 85.3]) == ["402", "85"]


def test_integers_stay_integers_and_signed_columns_show_signs():
    assert texts([0, 25, 756]) == ["0", "25", "756"]
    assert texts([-0.3, 0.12, 0.0]) == [MINUS + "0.300", "+0.120", "0.000"]


def test_percent_columns_and_the_true_minus_sign():
    assert texts([0.505, 0.1, 1.0], percent=True) == ["50.5%", "10.0%", "100.0%"]
    assert texts([-0.24, 0.05], percent=True) == [MINUS + "24.0%", "+5.0%"]
    assert "-" not in fmt_number(-6.9e-05, ".2e") and fmt_number(None) == "—"


def test_table_cells_format_by_column_and_keep_text_and_links():
    t = Table(
        "t",
        ["name", "rate", "x"],
        [["a", 0.5, 6.21e-09], ["b", None, 0.07], ["c", 0.25, float("nan")]],
        percent=("rate",),
    )
    cells = table_cells(t)
    assert [c[1] for c in cells] == [("50.0%", "num"), ("—", "num"), ("25.0%", "num")]
    assert (cells[0][2][0], cells[1][2][0]) == ("0.0000", "0.0700")
    assert cells[2][2][0] == "—" and cells[0][0] == ("a", "txt")
    linked = table_cells(Table("l", ["r"], [[[Link("x<", "a.html"), Link("y", "b.html")]]]))
    assert 'href="a.html"' in linked[0][0][0] and "x&lt;" in linked[0][0][0]
