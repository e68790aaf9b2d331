"""The README's configuration reference is the one `python -m conf --markdown` prints: no setting is
missing from it, none is stale."""
from pathlib import Path

from conf.settings import Settings, reference_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_every_setting_as_the_code_defines_it():
    table = reference_table()
    assert table in README.read_text(), "README out of date: paste `python -m conf --markdown` into it"
    assert table.count("\n| `MUSICREC_") == len(Settings.model_fields)
