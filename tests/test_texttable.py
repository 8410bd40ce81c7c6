"""The terminal table helper shared by evaluate, gradcheck and sweep."""

from __future__ import annotations

from fastmlp.texttable import text_table


def test_text_table_pads_names_left_and_numbers_right() -> None:
    rows = [("split", "rows", "loss"), ("train", "10000", "0.0022"), ("test", "7", "n/a")]
    assert text_table(rows).splitlines() == [
        "split   rows    loss",
        "train  10000  0.0022",
        "test       7     n/a",
    ]
    ruled = text_table([("H", "act", "acc"), ("1000", "relu", "0.95")], n_left=2, rule=True)
    assert ruled.splitlines() == ["H     act    acc", "----------------", "1000  relu  0.95"]
