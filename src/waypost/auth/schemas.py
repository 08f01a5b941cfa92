"""Wire models of the token routes: OAuth's own answer and error shapes (RFC 6749), which
Redox's token endpoints answer instead of the Platform API's envelope and problems."""

from __future__ import annotations

from pydantic import BaseModel


class TokenAnswer(BaseModel):
    access_token: str
    token_type: str
    expires_in: int


class TokenError(BaseModel):
    error: str
    error_description: str
    error_uri: str
