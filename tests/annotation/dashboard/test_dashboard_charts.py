"""The SVG charts print their values, escape user text and mark what they say they mark."""
import re

from annotation.dashboard import svg as charts

HOSTILE = '<img src=x onerror="alert(1)">&'


def test_bar_chart_prints_each_value_and_escapes_names():
    svg = str(charts.bar_chart([(HOSTILE, 12), ("b", 3)], title="Items <by> label"))
    assert "<img" not in svg and "Items &lt;by&gt; label" in svg
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in svg
    assert ">12</text>" in svg and ">3</text>" in svg
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)"', svg)]
    assert widths[0] == 4 * widths[1]


def test_stacked_bars_as_shares_fill_the_same_width():
    svg = str(charts.stacked_bars([("a", [1, 1]), ("b", [3, 1])], ["yes", "no"], title="t", shares=True))
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)" height="18"', svg)]
    assert abs((widths[0] + widths[1]) - (widths[2] + widths[3])) < 0.2
    assert ">2</text>" in svg and ">4</text>" in svg  # totals after the bars


def test_heatmap_prints_counts_and_outlines_marked_cells():
    svg = str(charts.heatmap([HOSTILE, "neg"], ["x", "y"], [[5, 0], [1, 9]], marked=[[False, True], [False, False]],
                             title="t"))
    assert "<img" not in svg
    assert svg.count('stroke-dasharray="4 2"') == 1
    for value in (5, 0, 1, 9):
        assert f">{value}</text>" in svg


def test_line_chart_skips_missing_points_and_prints_values():
    svg = str(charts.line_chart(["#1", "#2", "#3"], [("distinct-2", [0.5, None, 0.75]), (HOSTILE, [0.1, 0.2, 0.3])],
                                title="t"))
    assert "<img" not in svg
    assert svg.count("<circle") == 5
    assert ">0.75</text>" in svg


def test_long_names_are_shortened_with_the_full_name_as_tooltip():
    name = "a label with a really very long name indeed"
    svg = str(charts.bar_chart([(name, 1)], title="t"))
    assert f"<title>{name}</title>" in svg
    assert "…" in svg
