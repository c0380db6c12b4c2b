"""How a sync signs its requests: a :class:`Credential` and the ``requests`` auth it becomes.

==================================  ================================================================
credential                          requests carry
==================================  ================================================================
``token``                           ``Authorization: Bearer TOKEN`` (HubSpot private apps, Zendesk
                                    OAuth, Stripe secret keys, a Salesforce access token)
``token`` + ``email`` (Zendesk)     basic auth ``EMAIL/token:TOKEN`` (a Zendesk API token)
``refresh_token`` + ``client_id``   a Salesforce access token (``token``, may be empty), refreshed
+ ``client_secret`` (Salesforce)    through ``/services/oauth2/token`` (``grant_type=refresh_token``)
                                    when the API answers 401 ``INVALID_SESSION_ID``; the request is
                                    sent once more with the new token, which is handed to
                                    ``on_refresh`` (the runner stores it, encrypted)
==================================  ================================================================

>>> Credential(token="api-tok", email="agent@acme.com").kind
'zendesk_api_token'
>>> Credential(refresh_token="5Aep...", client_id="3MVG", client_secret="s").kind
'oauth_refresh'
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import msgspec

from segflow.syncs.exceptions import SyncInvalid, VendorError

TOKEN_PATH = "/services/oauth2/token"  # Salesforce's OAuth 2.0 token endpoint


class Credential(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """A sync's secrets (encrypted at rest by ``segflow.syncs.store``)."""

    token: str = ""  # the bearer token, Zendesk API token or Salesforce access token
    email: str | None = None  # Zendesk: the agent whose API token ``token`` is
    client_id: str | None = None  # Salesforce connected app (consumer key)
    client_secret: str | None = None
    refresh_token: str | None = None

    @property
    def kind(self) -> str:
        if self.refresh_token:
            return "oauth_refresh"
        return "zendesk_api_token" if self.email else "bearer"

    def secrets(self) -> dict[str, str]:
        """Everything but ``token`` (stored encrypted beside it)."""
        out: dict[str, str] = msgspec.to_builtins(self)
        out.pop("token", None)
        return out


def validate(vendor: str, credential: Credential) -> Credential:
    """Raise :class:`SyncInvalid` naming the field and the reason.

    >>> validate("stripe", Credential(token="rk_1", email="a@b.c"))
    Traceback (most recent call last):
    ...
    segflow.syncs.exceptions.SyncInvalid: credential.email: only Zendesk takes an email (API token auth)
    """
    if credential.email is not None and vendor != "zendesk":
        raise SyncInvalid("credential.email", "only Zendesk takes an email (API token auth)")
    if credential.email is not None and "@" not in credential.email:
        raise SyncInvalid("credential.email", "the Zendesk agent's email address")
    oauth = (credential.refresh_token, credential.client_id, credential.client_secret)
    if any(oauth) and vendor != "salesforce":
        raise SyncInvalid("credential.refresh_token", "only Salesforce refreshes its tokens")
    if any(oauth):
        for name, value in zip(("refresh_token", "client_id", "client_secret"), oauth, strict=True):
            if not value:
                raise SyncInvalid(f"credential.{name}", "the refresh flow needs all three")
    elif not credential.token:
        raise SyncInvalid("credential", "the vendor's API token is required")
    return credential


def _invalid_session(response: Any) -> bool:
    """Salesforce's answer to an expired or revoked access token."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return False
    errors = body if isinstance(body, list) else [body]
    return any(isinstance(e, dict) and e.get("errorCode") == "INVALID_SESSION_ID" for e in errors)


class Bearer:
    """``Authorization: Bearer TOKEN`` (a ``requests`` auth)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class ZendeskApiToken:
    """Zendesk's API token auth: basic auth of ``EMAIL/token`` and the token."""

    def __init__(self, email: str, token: str) -> None:
        raw = f"{email}/token:{token}".encode()
        self.header = "Basic " + base64.b64encode(raw).decode()

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = self.header
        return request


class SalesforceRefresh(Bearer):
    """A Salesforce access token that is refreshed on 401 ``INVALID_SESSION_ID`` (module
    docstring). ``session`` posts the refresh; ``on_refresh`` receives each new token."""

    def __init__(
        self,
        credential: Credential,
        token_url: str,
        session: Any,
        on_refresh: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(credential.token)
        self.credential = credential
        self.token_url = token_url
        self.session = session
        self.on_refresh = on_refresh
        self.refreshes = 0

    def __call__(self, request: Any) -> Any:
        if not self.token:
            self.refresh()
        request.headers["Authorization"] = f"Bearer {self.token}"
        request.register_hook("response", self._on_response)  # before the status check
        return request

    def refresh(self) -> str:
        """A new access token from the refresh token (raises :class:`VendorError` if refused)."""
        answer = self.session.post(
            self.token_url,
            data={
                "grant_type": "refresh_token",
                "client_id": self.credential.client_id,
                "client_secret": self.credential.client_secret,
                "refresh_token": self.credential.refresh_token,
            },
            headers={"Accept": "application/json"},
        )
        try:
            body = msgspec.json.decode(answer.content)
        except msgspec.DecodeError:
            body = {}
        token = body.get("access_token") if isinstance(body, dict) else None
        if answer.status_code != 200 or not isinstance(token, str) or not token:
            reason = body.get("error_description") or body.get("error") if body else answer.text
            raise VendorError(
                "salesforce",
                answer.status_code,
                f"the refresh token was refused: {str(reason)[:200]}",
                error=body.get("error") if isinstance(body, dict) else None,
            )
        self.token = token
        self.refreshes += 1
        if self.on_refresh is not None:
            self.on_refresh(token)
        return token

    def _on_response(self, response: Any, **kwargs: Any) -> Any:
        """On 401 ``INVALID_SESSION_ID``: refresh, and send the request once more (through the
        connection, as ``requests``' digest auth does, so this hook does not run again)."""
        if response.status_code != 401 or not _invalid_session(response):
            return response
        response.close()
        self.refresh()
        again = response.request.copy()
        again.headers["Authorization"] = f"Bearer {self.token}"
        retried = response.connection.send(again, **kwargs)
        retried.history.append(response)
        retried.request = again
        return retried


def requests_auth(
    vendor: str,
    base_url: str,
    credential: Credential,
    session: Any,
    on_refresh: Callable[[str], None] | None = None,
) -> Any:
    """The ``requests`` auth of ``credential`` (see the module docstring)."""
    if credential.kind == "oauth_refresh":
        return SalesforceRefresh(credential, base_url.rstrip("/") + TOKEN_PATH, session, on_refresh)
    if credential.kind == "zendesk_api_token":
        return ZendeskApiToken(credential.email or "", credential.token)
    return Bearer(credential.token)
