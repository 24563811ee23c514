"""misuse signals with their evidence (R-70); the peer terminal of a scan across regions

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'signals',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('evidence', sa.Text(), nullable=False),
        sa.Column('key', sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_signals_card_id_cards')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_signals')),
        sa.UniqueConstraint('key', name=op.f('uq_signals_key')),
        sa.UniqueConstraint('public_id', name=op.f('uq_signals_public_id')),
    )
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signals_card_id'), ['card_id'], unique=False)
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acquirer_terminal', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.drop_column('acquirer_terminal')
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signals_card_id'))
    op.drop_table('signals')
