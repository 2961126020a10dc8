"""Time formatting and the ruler's tick steps."""

from __future__ import annotations

import pytest

from gui.views import TimeAxisItem, format_time

pytestmark = pytest.mark.gui


@pytest.mark.parametrize(
    ("seconds", "ms", "text"),
    [
        (0.0, True, "0:00.000"),
        (1.2345, True, "0:01.234"),  # 1.2345 s is 1234.4999… ms in binary
        (59.9996, True, "1:00.000"),
        (754.5, True, "12:34.500"),
        (3723.004, True, "1:02:03.004"),
        (-2.5, True, "-0:02.500"),
        (65.6, False, "1:06"),
    ],
)
def test_format_time(seconds: float, ms: bool, text: str) -> None:
    assert format_time(seconds, milliseconds=ms) == text


def test_ruler_ticks_are_round_times_about_110_px_apart(qapp) -> None:
    axis = TimeAxisItem("top")
    # 4 minutes over 1100 px: ~24 s per 110 px -> 30 s ticks, minor every 5 s
    assert axis.tickSpacing(0.0, 240.0, 1100.0) == [(30, 0.0), (5.0, 0.0)]
    # 3 s over 1100 px -> 0.5 s ticks with millisecond labels
    major, _ = axis.tickSpacing(0.0, 3.0, 1100.0)[0]
    assert major == 0.5
    assert axis.tickStrings([1.5], 1.0, 0.5) == ["0:01.500"]
    assert axis.tickStrings([90.0], 1.0, 30.0) == ["1:30"]
    # an hour over 1100 px -> 10 min ticks
    assert axis.tickSpacing(0.0, 3600.0, 1100.0)[0] == (600, 0.0)
