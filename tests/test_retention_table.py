"""The README's retention table is a contract: every test it names exists (issue 10).

A row whose test is renamed or deleted would leave a lifetime unproven while
the table still promises it; this fails instead.
"""

from __future__ import annotations

import re

from tests import REPO

_SECTION = "## Retention: every copy of personal data has a lifetime"
_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _rows() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert _SECTION in text, "the README lost its retention table"
    section = text.split(_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    return rows[1:]


def test_every_row_names_at_least_one_test_and_every_named_test_exists() -> None:
    rows = _rows()
    assert len(rows) >= 10
    for row in rows:
        refs = _TEST_REF.findall(row)
        assert refs, f"a retention row without a test: {row[:80]}"
        for path, name in refs:
            source = REPO / path
            assert source.is_file(), f"{path} (named in the retention table) does not exist"
            assert re.search(rf"^def {name}\(", source.read_text(encoding="utf-8"), re.M), \
                f"{path}::{name} (named in the retention table) does not exist"
