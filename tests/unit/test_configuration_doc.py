"""docs/configuration.md is generated from the settings class and never drifts from it."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from cli import configuration_doc
from cli.configuration_doc import DOC_PATH, comment_descriptions, constraints, render
from pipeline.settings import Settings


def test_configuration_page_matches_the_settings_class() -> None:
    # Regenerate with: python -m cli.configuration_doc (or make docs)
    assert DOC_PATH.read_text(encoding="utf-8") == render()


def test_every_setting_has_a_row_naming_its_environment_variable() -> None:
    page = render()
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in page


def test_every_setting_is_described() -> None:
    assert "(not described yet)" not in render()


def test_comment_above_a_field_is_its_description() -> None:
    class Example(BaseSettings):
        #: how many widgets
        #: at once
        widgets: int = 1
        plain: int = 2

    assert comment_descriptions(Example) == {"widgets": "how many widgets at once"}


def test_bounds_are_rendered_from_the_field() -> None:
    class Example(BaseSettings):
        ttl: int = Field(default=7, ge=1, le=365)
        share: float = Field(default=0.3, gt=0, le=1)

    assert constraints(Example.model_fields["ttl"]) == "≥ 1, ≤ 365"
    assert constraints(Example.model_fields["share"]) == "> 0, ≤ 1"


def test_check_mode_reports_a_stale_page(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(configuration_doc, "DOC_PATH", stale)
    assert configuration_doc.main(["--check"]) == 1
    assert configuration_doc.main([]) == 0
    assert configuration_doc.main(["--check"]) == 0
