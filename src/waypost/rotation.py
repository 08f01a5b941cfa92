"""Key rotation: moves every secret stored at rest onto the first WAYPOST_SECRET_KEY.

Secrets live in two places: auth credentials' secret fields and destinations'
verification tokens. Each value says which key sealed it; a value already sealed with
the first key is left alone, so running this twice does nothing the second time.
"""

from __future__ import annotations

from waypost.credentials import service as credentials
from waypost.crypto import SecretBox
from waypost.db import Database
from waypost.destinations import service as destinations


async def reencrypt_all(db: Database, box: SecretBox) -> int:
    """Re-encrypts every secret not sealed with the first key; returns how many. All or
    nothing: one transaction (rows locked), so a secret that cannot be opened changes
    nothing."""
    async with db.write() as conn:
        return await credentials.reseal_secrets(conn, box) + await destinations.reseal_tokens(
            conn, box
        )
