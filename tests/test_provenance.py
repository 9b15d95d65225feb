"""Rules rerun when the code they run changes, and only then."""

from __future__ import annotations

import pytest

from emdiffuse.provenance import GROUPS, _normalised, code_digest

SOURCE = '''"""Module docstring."""

def score(x):
    """What it does."""
    return x * 2  # doubled
'''


def test_comments_docstrings_and_layout_leave_the_digest_unchanged_code_changes_it(tmp_path):
    original, cosmetic, changed = (tmp_path / f"{n}.py" for n in ("a", "b", "c"))
    original.write_text(SOURCE)
    cosmetic.write_text('"""Another docstring."""\n\n\ndef score(x):\n    """Other words."""\n\n    return (x * 2)\n')
    changed.write_text(SOURCE.replace("x * 2", "x * 3"))
    assert _normalised(original) == _normalised(cosmetic) != _normalised(changed)


def test_digests_are_stable_and_differ_by_stage():
    assert code_digest("model", "steps") == code_digest("steps", "model")
    assert len({code_digest(g) for g in GROUPS}) == len(GROUPS)
    assert code_digest("model", "isotropic") != code_digest("model", "steps")
    with pytest.raises(ValueError, match="no module emdiffuse.nonexistent"):
        code_digest("nonexistent")
