"""Destinations: the auth credential becomes a foreign key within the environment, and
delivery settings.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The target of the composite key below: a credential together with its environment.
    with op.batch_alter_table("auth_credentials") as batch:
        batch.create_unique_constraint(
            "uq_auth_credentials_id_environment_id", ["id", "environment_id"]
        )
    # Until now the reference was guarded by hand; drop any that point nowhere (or into
    # another environment), which the constraint would refuse.
    op.execute(
        sa.text(
            "UPDATE destinations SET auth_credential_id = NULL "
            "WHERE auth_credential_id IS NOT NULL AND NOT EXISTS ("
            "SELECT 1 FROM auth_credentials AS c "
            "WHERE c.id = destinations.auth_credential_id "
            "AND c.environment_id = destinations.environment_id)"
        )
    )
    with op.batch_alter_table("destinations") as batch:
        batch.add_column(sa.Column("delivery", sa.JSON, nullable=True))
        batch.create_foreign_key(
            "fk_destinations_auth_credential_auth_credentials",
            "auth_credentials",
            ["auth_credential_id", "environment_id"],
            ["id", "environment_id"],
            ondelete="RESTRICT",
        )
        # Deleting a credential looks up the destinations that use it.
        batch.create_index("ix_destinations_auth_credential_id", ["auth_credential_id"])
