"""device keys and their credentials (R-51: ED1 codes made on an offline phone)

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'device_keys',
        sa.Column('id', ROW_ID, nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('binding_id', ROW_ID, nullable=False),
        sa.Column('link_id', ROW_ID, nullable=True),
        sa.Column('alg', sa.String(length=8), nullable=False),
        sa.Column('public_key', sa.LargeBinary(length=65), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.Column('revoke_reason', sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(['binding_id'], ['bindings.id'], name=op.f('fk_device_keys_binding_id_bindings')),
        sa.ForeignKeyConstraint(['link_id'], ['proxy_links.id'], name=op.f('fk_device_keys_link_id_proxy_links')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_device_keys')),
        sa.UniqueConstraint('public_id', name=op.f('uq_device_keys_public_id')),
    )
    with op.batch_alter_table('device_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_keys_binding_id'), ['binding_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_keys_link_id'), ['link_id'], unique=False)
    op.create_table(
        'device_credentials',
        sa.Column('id', ROW_ID, nullable=False),
        sa.Column('serial', sa.LargeBinary(length=12), nullable=False),
        sa.Column('device_key_id', ROW_ID, nullable=False),
        sa.Column('card_id', ROW_ID, nullable=False),
        sa.Column('issued_at', sa.DateTime(), nullable=False),
        sa.Column('not_after', sa.DateTime(), nullable=False),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_device_credentials_card_id_cards')),
        sa.ForeignKeyConstraint(
            ['device_key_id'], ['device_keys.id'], name=op.f('fk_device_credentials_device_key_id_device_keys')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_device_credentials')),
        sa.UniqueConstraint('serial', name=op.f('uq_device_credentials_serial')),
    )
    with op.batch_alter_table('device_credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_credentials_card_id'), ['card_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_credentials_device_key_id'), ['device_key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_credentials_revoked_at'), ['revoked_at'], unique=False)


def downgrade():
    op.drop_table('device_credentials')
    op.drop_table('device_keys')
