"""row ids of 64 bits on PostgreSQL: every table's own key, its sequence, and the keys pointing at it

INTEGER ends at 2**31 - 1: a province's verifications (a row a scan) pass that within months.
SQLite's INTEGER PRIMARY KEY is already the 64-bit rowid: nothing to do there.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# (table, column) of every row id: a table's own `id` and each foreign key to one.
OWN_KEYS = ('idempotency_records', 'merchants', 'operators', 'persons', 'cards', 'consent_codes', 'proxy_links',
            'relations', 'terminals', 'chip_challenges', 'ecards', 'events', 'verifications', 'bindings')
POINTERS = (('cards', 'person_id'), ('cards', 'previous_card_id'), ('consent_codes', 'person_id'),
            ('proxy_links', 'proxy_person_id'), ('proxy_links', 'dependant_person_id'), ('relations', 'person_id'),
            ('relations', 'relative_id'), ('terminals', 'merchant_id'), ('chip_challenges', 'terminal_id'),
            ('ecards', 'person_id'), ('ecards', 'card_id'), ('events', 'person_id'), ('events', 'card_id'),
            ('verifications', 'terminal_id'), ('verifications', 'person_id'), ('verifications', 'card_id'),
            ('verifications', 'proxy_person_id'), ('bindings', 'ecard_id'), ('redemptions', 'verification_id'))


def _retype(sql_type):
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    for table in OWN_KEYS:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN id TYPE {sql_type}')
        seq = bind.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {'t': table}).scalar()
        if seq is not None:
            op.execute(f'ALTER SEQUENCE {seq} AS {sql_type}')
    for table, column in POINTERS:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE {sql_type}')


def upgrade():
    _retype('BIGINT')


def downgrade():
    _retype('INTEGER')
