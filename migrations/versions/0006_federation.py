"""a regional federation (R-54): peers' trust lists, peers' calls, scans across regions

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'peer_trust_lists',
        sa.Column('region_code', sa.String(length=6), nullable=False),
        sa.Column('token', sa.Text(), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('fetched_at', sa.DateTime(), nullable=False),
        sa.Column('checked_at', sa.DateTime(), nullable=False),
        sa.Column('error', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('region_code', name=op.f('pk_peer_trust_lists')),
    )
    op.create_table(
        'federation_calls',
        sa.Column('jti', sa.String(length=64), nullable=False),
        sa.Column('region_code', sa.String(length=6), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('jti', name=op.f('pk_federation_calls')),
    )
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issuer_region', sa.String(length=6), nullable=True))
        batch_op.add_column(sa.Column('acquirer_region', sa.String(length=6), nullable=True))
        batch_op.add_column(sa.Column('acquirer_merchant', sa.String(length=100), nullable=True))


def downgrade():
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.drop_column('acquirer_merchant')
        batch_op.drop_column('acquirer_region')
        batch_op.drop_column('issuer_region')
    op.drop_table('federation_calls')
    op.drop_table('peer_trust_lists')
