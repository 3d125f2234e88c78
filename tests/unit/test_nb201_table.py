"""The one reader of NAS-Bench-201-format tables, shared by the tabular evaluator and
``scion bench strategies``: what a user notices is the numbers it finds, that an edited table is
read again, and that a malformed table is refused naming its file, line and fault."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from spaces.nb201 import NB201Space
from worker.evaluators.nb201_table import TableError, load_table

KEY = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
HEADER = "arch,val_acc_12ep,test_acc_12ep,test_acc_200ep\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_keeps_the_signal_and_the_held_out_column_by_canonical_key(tmp_path: Path) -> None:
    table = load_table(write(tmp_path / "t.csv", f"{HEADER}{KEY},82.834,88.22,93.66\n {NONE} ,10.0,11.0,12.0\n"))
    assert len(table) == 2 and table.name == "t"
    assert table.lookup(KEY) == (82.834, 93.66)  # never test_acc_12ep
    assert table.lookup(NB201Space().key(["none"] * 6)) == (10.0, 12.0)
    assert table.best_test == 93.66 and table.test_of_best_val == 93.66
    with pytest.raises(KeyError):
        table.lookup(NB201Space().key(["skip_connect"] * 6))


def test_columns_may_come_in_any_order(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", f"test_acc_200ep,arch,val_acc_12ep\n93.66,{KEY},82.834\n")
    assert load_table(path).lookup(KEY) == (82.834, 93.66)


def test_an_edited_table_is_read_again(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", f"{HEADER}{KEY},82.834,88.22,93.66\n")
    assert load_table(path) is load_table(path)  # read once
    write(path, f"{HEADER}{KEY},50.0,88.22,60.0\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert load_table(path).lookup(KEY) == (50.0, 60.0)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("arch,val_acc_12ep\n", [":1:", "missing test_acc_200ep", "header: arch, val_acc_12ep"]),
        (f"{HEADER}{KEY},82.8,88.2,93.6\n{NONE},high,1,2\n", [":3:", "val_acc_12ep 'high' is not a number"]),
        (f"{HEADER}{KEY},82.8,88.2\n", [":2:", "3 field(s) where the header names 4"]),
        (f"{HEADER}|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|,1,1,1\n", [":2:", "'conv' is not an operation"]),
        (f"{HEADER}{KEY},1,1,1\n\n{KEY},2,2,2\n", [":4:", "appears twice (first on line 2)"]),
        (HEADER, ["has no rows"]),
    ],
    ids=["column", "number", "short row", "arch", "twice", "empty"],
)
def test_a_malformed_table_is_refused_naming_file_line_and_fault(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(TableError) as info:
        load_table(path)
    message = str(info.value)
    assert f"{path}:" in message or f"{path} " in message
    for fragment in fragments:
        assert fragment in message


def test_a_missing_table_says_so(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="nope.csv does not exist"):
        load_table(tmp_path / "nope.csv")
