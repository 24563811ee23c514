"""a person's eligibility with its evidence (R-03); who asked for a cancellation, with its proof (R-20)

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('eligibility', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('eligibility_evidence_kind', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('eligibility_evidence_no_enc', sa.LargeBinary(), nullable=True))
    op.create_table(
        'cancellations',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('reason', sa.String(length=24), nullable=False),
        sa.Column('requested_by', sa.String(length=24), nullable=False),
        sa.Column('requester_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('proof_kind', sa.String(length=32), nullable=True),
        sa.Column('proof_no_enc', sa.LargeBinary(), nullable=True),
        sa.Column('recorded_by', sa.String(length=64), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_cancellations_card_id_cards')),
        sa.ForeignKeyConstraint(['requester_id'], ['persons.id'], name=op.f('fk_cancellations_requester_id_persons')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cancellations')),
        sa.UniqueConstraint('card_id', name=op.f('uq_cancellations_card_id')),
    )


def downgrade():
    op.drop_table('cancellations')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_column('eligibility_evidence_no_enc')
        batch_op.drop_column('eligibility_evidence_kind')
        batch_op.drop_column('eligibility')
