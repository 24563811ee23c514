"""The schema comes only from the migrations: one head, and nothing the models have that the
migrations lack."""

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from ecard import MIGRATIONS
from ecard.db import Base


def test_one_head():
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert len(ScriptDirectory.from_config(cfg).get_heads()) == 1


def test_models_match_the_migrated_schema(app):
    conn = app.extensions["ecard.db"].bind  # this test's connection
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    diff = compare_metadata(ctx, Base.metadata)
    assert diff == []
