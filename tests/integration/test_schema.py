"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ledger.db import engine
from ledger.migrate import current_revision
from ledger.models import Base
from pipeline.settings import get_settings

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_models(service_env) -> None:
    with engine().connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_database_is_at_the_head_revision(service_env) -> None:
    from alembic.script import ScriptDirectory

    from ledger.migrate import alembic_config

    url = get_settings().require_database_url()
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert current_revision(url) == head
