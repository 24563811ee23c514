"""the e-card's own password and each channel's payment window (R-45)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('ecards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_hash', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('password_failures', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('password_locked_until', sa.DateTime(), nullable=True))
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unlocked_until', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_column('unlocked_until')
    with op.batch_alter_table('ecards', schema=None) as batch_op:
        batch_op.drop_column('password_locked_until')
        batch_op.drop_column('password_failures')
        batch_op.drop_column('password_hash')
