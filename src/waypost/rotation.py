"""Key rotation: moves every secret stored at rest onto the first WAYPOST_SECRET_KEY.

Secrets live in two places: auth credentials' secret fields and destinations'
verification tokens. Each value says which key sealed it; a value already sealed with
the first key is left alone, so running this twice does nothing the second time.
"""

from __future__ import annotations

from waypost.audit.service import Actor, Event, record
from waypost.credentials import service as credentials
from waypost.crypto import SecretBox
from waypost.db import Database
from waypost.destinations import service as destinations
from waypost.organizations import service as organizations


async def reencrypt_all(db: Database, box: SecretBox) -> int:
    """Re-encrypts every secret not sealed with the first key; returns how many. All or
    nothing: one transaction (rows locked), so a secret that cannot be opened changes
    nothing. When it moved any, every organization's audit trail records that its
    secrets at rest were re-encrypted (no counts: one organization's trail says nothing
    of another's secrets)."""
    async with db.write() as conn:
        count = await credentials.reseal_secrets(conn, box) + await destinations.reseal_tokens(
            conn, box
        )
        if count:
            for organization_id in await organizations.organization_ids(conn):
                await record(
                    conn,
                    Actor.command_line(organization_id, "secrets reencrypt"),
                    Event("secrets-reencrypted"),
                )
        return count
