"""security review: offline references of their own, offline-capable terminals, nonces of judged codes

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('offline_ref', sa.String(length=16), nullable=True))
        batch_op.create_unique_constraint('uq_bindings_offline_ref', ['offline_ref'])
    # Bindings made before this keep the reference their apps already hold (the binding id's
    # random part); every binding made from now on gets a random one of its own.
    op.execute("UPDATE bindings SET offline_ref = upper(substr(public_id, 5)) WHERE offline_ref IS NULL")
    with op.batch_alter_table('terminals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('offline_capable', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nonce', sa.LargeBinary(length=16), nullable=True))
        batch_op.create_index('ix_verifications_nonce', ['nonce'], unique=False)


def downgrade():
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.drop_index('ix_verifications_nonce')
        batch_op.drop_column('nonce')
    with op.batch_alter_table('terminals', schema=None) as batch_op:
        batch_op.drop_column('offline_capable')
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_constraint('uq_bindings_offline_ref', type_='unique')
        batch_op.drop_column('offline_ref')
