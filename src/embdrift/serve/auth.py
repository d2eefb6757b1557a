"""Who may write and read: bearer tokens compared in constant time, and safe binding.

The service binds 127.0.0.1 by default. :func:`check_bind` refuses any non-loopback address
unless a token is set, so a service reachable from the network always requires
``Authorization: Bearer <token>`` on its write endpoints. Reads (``/metrics``, ``/v1`` GETs,
the live page) are public unless ``protect_reads`` is set.

Route modules use the FastAPI dependencies :func:`require_write` and :func:`require_read`;
both read the :class:`Auth` object the app keeps at ``app.state.auth``, e.g.
``router.get("/", dependencies=[Depends(require_read)])``.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from embdrift.errors import UnauthorizedError, UnsafeBindError

__all__ = [
    "Auth",
    "bearer_scheme",
    "check_bind",
    "is_loopback",
    "require_read",
    "require_write",
]

#: Declares the bearer scheme in the OpenAPI document; never rejects by itself.
bearer_scheme = HTTPBearer(auto_error=False, description="The token given to --token.")


class Auth:
    """The service's token and what it protects.

    Parameters
    ----------
    token : str or None
        Bearer token required on write endpoints (and on reads with ``protect_reads``);
        None means no authentication (only allowed on loopback addresses).
    protect_reads : bool
        Also require the token on ``/metrics``, the ``/v1`` GET endpoints and the page.
    """

    def __init__(self, token: str | None = None, *, protect_reads: bool = False) -> None:
        if token is not None and len(token) < 16:
            raise UnsafeBindError(
                "The access token must be at least 16 characters long; got"
                f" {len(token)}. Generate one with: python -c 'import secrets;"
                " print(secrets.token_urlsafe(32))'."
            )
        self._token = None if token is None else token.encode()
        self.protect_reads = protect_reads

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def __repr__(self) -> str:
        return f"Auth(enabled={self.enabled}, protect_reads={self.protect_reads})"

    def check(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        """Raise :class:`UnauthorizedError` unless ``credentials`` carry the token."""
        if self._token is None:
            return
        given = b"" if credentials is None else credentials.credentials.encode()
        if credentials is None or not hmac.compare_digest(given, self._token):
            raise UnauthorizedError(
                "This endpoint needs the header 'Authorization: Bearer <token>' with the"
                " service's token (--token or EMBDRIFT_TOKEN); it was missing or wrong."
            )


def require_write(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),  # noqa: B008
) -> None:
    """FastAPI dependency of write endpoints; a refusal is counted as a rejected batch
    (reason ``unauthorized``) when the app has a stream registry."""
    auth: Auth = request.app.state.auth
    try:
        auth.check(credentials)
    except UnauthorizedError:
        registry = getattr(request.app.state, "registry", None)
        if registry is not None:
            registry.record_rejection("unauthorized")
        raise


def require_read(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),  # noqa: B008
) -> None:
    """FastAPI dependency of read endpoints (checks only with ``protect_reads``)."""
    auth: Auth = request.app.state.auth
    if auth.protect_reads:
        auth.check(credentials)


def is_loopback(host: str) -> bool:
    """True when ``host`` names only loopback addresses (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback ``host`` without a token (:class:`UnsafeBindError`)."""
    if token is None and not is_loopback(host):
        raise UnsafeBindError(
            f"Refusing to listen on {host!r} without an access token: anyone who can reach"
            " that address could write to the streams. Pass --token (or set EMBDRIFT_TOKEN),"
            " or bind a loopback address such as --host 127.0.0.1."
        )
