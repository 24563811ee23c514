"""chip personalization: master key version and card identification code on the card

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chip_key_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('chip_id_code', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_column('chip_id_code')
        batch_op.drop_column('chip_key_version')
