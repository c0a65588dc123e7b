"""What .ci/run relies on from this folder."""

from __future__ import annotations

from conftest import LONGEST_FIRST, ROOT


def test_the_longest_files_ci_starts_with_exist():
    """A file renamed or removed would leave LONGEST_FIRST without a word, and its tests to xdist's order again."""
    assert [n for n in LONGEST_FIRST if not (ROOT / "tests" / n).is_file()] == []
    assert "--no-loadscope-reorder" in (ROOT / ".ci" / "run").read_text()  # the order is used only with it
