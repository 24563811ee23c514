"""a merchant's location, and a card's uses by card (R-70: impossible travel)

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('latitude', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('longitude', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('district', sa.String(length=6), nullable=True))
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.create_index('ix_verifications_card_id_id', ['card_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.drop_index('ix_verifications_card_id_id')
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.drop_column('district')
        batch_op.drop_column('longitude')
        batch_op.drop_column('latitude')
