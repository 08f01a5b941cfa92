"""Key rotation: moves every secret stored at rest onto the first WAYPOST_SECRET_KEY.

Secrets live in two places: auth credentials' secret fields and destinations'
verification tokens. Each value says which key sealed it; a value already sealed with
the first key is left alone, so running this twice does nothing the second time.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag

from waypost.credentials.service import secret_context
from waypost.credentials.tables import auth_credentials
from waypost.crypto import SecretBox, SecretKeyError
from waypost.db import Database
from waypost.destinations.service import _token_context as destination_token_context
from waypost.destinations.tables import destinations

# Locked until the transaction ends, so that no request changes a row half-way through.
_credentials = sa.select(
    auth_credentials.c.seq, auth_credentials.c.id, auth_credentials.c.secrets
).with_for_update()
_destinations = (
    sa.select(destinations.c.seq, destinations.c.id, destinations.c.verification_token)
    .where(destinations.c.verification_token.is_not(None))
    .with_for_update()
)


def _reseal(box: SecretBox, stored: str, context: str, what: str) -> str:
    try:
        return box.encrypt(box.decrypt(stored, context), context)
    except (InvalidTag, SecretKeyError, ValueError):
        raise SecretKeyError(
            f"{what} cannot be opened with any key in WAYPOST_SECRET_KEY; "
            "list the key that sealed it (after the new one) and run this again"
        ) from None


async def reencrypt_all(db: Database, box: SecretBox) -> int:
    """Re-encrypts every secret not sealed with the first key; returns how many. All or
    nothing: one transaction, so a secret that cannot be opened changes nothing."""
    count = 0
    async with db.write() as conn:
        for row in (await conn.execute(_credentials)).all():
            secrets: dict[str, Any] = dict(row.secrets)
            stale = [name for name, stored in secrets.items() if not box.is_current(stored)]
            for name in stale:
                secrets[name] = _reseal(
                    box,
                    secrets[name],
                    secret_context(row.id, name),
                    f"the {name} of auth credential {row.id}",
                )
            if stale:
                await conn.execute(
                    auth_credentials.update()
                    .where(auth_credentials.c.seq == row.seq)
                    .values(secrets=secrets)
                )
                count += len(stale)
        for row in (await conn.execute(_destinations)).all():
            if box.is_current(row.verification_token):
                continue
            token = _reseal(
                box,
                row.verification_token,
                destination_token_context(row.id),
                f"the verificationToken of destination {row.id}",
            )
            await conn.execute(
                destinations.update()
                .where(destinations.c.seq == row.seq)
                .values(verification_token=token)
            )
            count += 1
    return count
