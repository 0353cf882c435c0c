"""The Client: one authenticated connection to a Cloud Sandbox server."""

from __future__ import annotations

import ssl
import urllib.parse
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from . import _config, errors
from . import events as _events
from .events import Event
from ._auth import TokenManager
from ._transport import Response, RetryPolicy, StreamResponse, Transport
from .models import PoolStats, SandboxInfo
from .sessions import Sessions

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Sandbox


def new_idempotency_key() -> str:
    """Returns a fresh key for one logical mutating call (kept across its retries)."""
    return uuid.uuid4().hex


class Client:
    """An authenticated client for one Cloud Sandbox server; safe to share between threads.

    Credentials, in the order they are looked for:

    - ``user_id`` (or ``CLOUD_SANDBOX_USER``): development mode, any user id;
    - ``api_key`` (or ``CLOUD_SANDBOX_API_KEY``): production mode, the user comes from the key;
    - ``token`` (or ``CLOUD_SANDBOX_TOKEN``): a ready access token, used as is (never renewed);
      with ``refresh_token`` (or ``CLOUD_SANDBOX_REFRESH_TOKEN``) the pair is refreshed as it
      expires, until the server refuses the refresh token (:class:`AuthenticationError`).

    ``base_url`` defaults to ``CLOUD_SANDBOX_URL`` or ``http://localhost:8080``;
    ``timeout`` (seconds per request) to ``CLOUD_SANDBOX_TIMEOUT`` or 60.

    Example::

        with Client(user_id="alice") as client:
            session = client.sessions.create(cpu_count=2, memory_mb=1024)
            with session.sandbox() as sandbox:
                print(sandbox.run_code("print(6 * 7)").stdout)
            session.delete()
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        user_id: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        token: Optional[str] = None,
        refresh_token: Optional[str] = None,
        role: Optional[str] = None,
        timeout: Optional[float] = None,
        retry: Optional[RetryPolicy] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        from . import __version__

        user_id = _config.setting(user_id, _config.ENV_USER)
        api_key = _config.setting(api_key, _config.ENV_API_KEY)
        token = _config.setting(token, _config.ENV_TOKEN)
        refresh_token = _config.setting(refresh_token, _config.ENV_REFRESH_TOKEN)
        if not (user_id or api_key or token or refresh_token):
            raise ValueError(
                "no credentials: pass user_id=, api_key=, token= or refresh_token=, "
                f"or set {_config.ENV_USER}, {_config.ENV_API_KEY}, {_config.ENV_TOKEN} or {_config.ENV_REFRESH_TOKEN}")
        self._transport = Transport(
            _config.base_url(base_url),
            timeout=_config.timeout(timeout),
            retry=retry or RetryPolicy(),
            ssl_context=ssl_context,
            user_agent=f"cloud-sandbox-python/{__version__}",
        )
        self._tokens = TokenManager(self._transport, user_id=user_id, api_key=api_key, role=role, token=token,
                                    refresh_token=refresh_token)
        self._transport.auth = self._tokens
        self._user_id = user_id
        self.sessions = Sessions(self)
        """Session operations: ``create``, ``list``, ``get``, ``pause``, ``resume``, ``delete``."""

    @property
    def base_url(self) -> str:
        """The server URL this client talks to."""
        return self._transport.base_url

    @property
    def user_id(self) -> Optional[str]:
        """The user id given to the client (None with an API key or a fixed token)."""
        return self._user_id

    @property
    def timeout(self) -> float:
        """The default per-request timeout in seconds."""
        return self._transport.timeout

    # --- plumbing shared by Sessions and Sandbox -------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Response:
        resp = self._transport.request(method, path, **kwargs)
        assert isinstance(resp, Response)
        return resp

    def _stream(self, method: str, path: str, **kwargs: Any) -> StreamResponse:
        resp = self._transport.request(method, path, stream=True, **kwargs)
        assert isinstance(resp, StreamResponse)
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Dict[str, Any]:
        resp = self._request(method, path, **kwargs)
        doc = resp.json()
        if not isinstance(doc, dict):
            raise errors.ServerError(f"expected a JSON object in response to {method} {path}, got {type(doc).__name__}",
                                     status=resp.status, method=method, path=path)
        return doc

    # --- sandboxes ----------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """Returns the server's ``GET /health`` document (no authentication needed)."""
        return self._json("GET", "/health", auth=False)

    def acquire(self, *, image: Optional[str] = None, network: Optional[bool] = None,
                **options: Any) -> "Sandbox":
        """Acquires a sandbox from the pool; the returned Sandbox releases it on ``with`` exit.

        ``options`` are those of :meth:`Sandbox.create`: ``template``, ``cpu_count``,
        ``memory_mb``, ``disk_mb``, ``timeout`` (the sandbox's lifetime in seconds),
        ``idle_timeout``, ``metadata`` and ``envs``. The request carries one
        idempotency key across its retries, so a retry after a lost response
        returns the same sandbox instead of a second one.
        """
        from .sandbox import Sandbox

        return Sandbox(self, self._acquire(image=image, network=network, **options), release_on_exit=True)

    def _acquire(
        self,
        *,
        image: Optional[str] = None,
        network: Optional[bool] = None,
        template: Optional[str] = None,
        cpu_count: Optional[float] = None,
        memory_mb: Optional[int] = None,
        disk_mb: Optional[int] = None,
        timeout: Optional[int] = None,
        idle_timeout: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
        envs: Optional[Mapping[str, str]] = None,
    ) -> SandboxInfo:
        body: Dict[str, Any] = {}
        if image:
            body["image"] = image
        if template:
            body["template"] = template
        if network is not None:
            body["network"] = network
        for key, value in (("cpu_count", cpu_count), ("memory_mb", memory_mb), ("disk_mb", disk_mb),
                           ("timeout", timeout), ("idle_timeout", idle_timeout)):
            if value is not None:
                body[key] = value
        if metadata:
            body["metadata"] = dict(metadata)
        if envs:
            body["env"] = dict(envs)
        doc = self._json("POST", "/api/v1/sandbox/acquire", json_body=body,
                         idempotency_key=new_idempotency_key(),
                         timeout=max(self.timeout, _config.PLACEMENT_TIMEOUT))
        return SandboxInfo.from_json(doc)

    def sandbox(self, sandbox_id: str) -> "Sandbox":
        """Returns a Sandbox bound to an existing sandbox id; leaving its ``with`` releases nothing."""
        from .sandbox import Sandbox

        return Sandbox(self, SandboxInfo(sandbox_id=sandbox_id, status=""), release_on_exit=False)

    def get_sandbox(self, sandbox_id: str) -> SandboxInfo:
        """Returns one sandbox; NotFoundError for an unknown id or another user's."""
        return SandboxInfo.from_json(self._json("GET", f"/api/v1/sandbox/{_seg(sandbox_id)}"))

    def list_sandboxes(self, **query: Any) -> List[SandboxInfo]:
        """Returns the caller's sandboxes (an admin sees everyone's), every page of them.

        Filters (all optional): ``state``, ``image``, ``metadata`` (a dict; every pair
        must match), ``created_after``, ``created_before`` (datetimes or RFC 3339).
        """
        out: List[SandboxInfo] = []
        token: Optional[str] = None
        while True:
            items, token = self.sandboxes_page(page_token=token, **query)
            out.extend(items)
            if not token:
                return out

    def sandboxes_page(
        self,
        *,
        state: Optional[str] = None,
        image: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        created_after: Any = None,
        created_before: Any = None,
        limit: Optional[int] = None,
        page_token: Optional[str] = None,
    ) -> Tuple[List[SandboxInfo], Optional[str]]:
        """Returns one page of sandboxes in creation order and the next page's token (None on the last)."""
        q: Dict[str, Any] = {"state": state, "image": image, "limit": limit, "page_token": page_token,
                             "created_after": _rfc3339(created_after), "created_before": _rfc3339(created_before)}
        for k, v in (metadata or {}).items():
            q[f"metadata.{k}"] = v
        doc = self._json("GET", "/api/v1/sandboxes", query=q)
        items = [SandboxInfo.from_json(d) for d in doc.get("sandboxes") or [] if isinstance(d, dict)]
        token = doc.get("next_page_token")
        return items, token if isinstance(token, str) and token else None

    def set_timeout(self, sandbox_id: str, timeout: int) -> SandboxInfo:
        """Gives a sandbox a new lifetime: it ends ``timeout`` seconds from now."""
        return SandboxInfo.from_json(self._json("POST", f"/api/v1/sandbox/{_seg(sandbox_id)}/timeout",
                                                json_body={"timeout": int(timeout)}))

    def pause(self, sandbox_id: str) -> SandboxInfo:
        """Pauses a sandbox (Docker keeps its processes and memory; Nomad saves its files)."""
        return SandboxInfo.from_json(self._json("POST", f"/api/v1/sandbox/{_seg(sandbox_id)}/pause",
                                                resend_safe=True))

    def resume(self, sandbox_id: str) -> SandboxInfo:
        """Resumes a paused sandbox and returns once it runs (a running one is returned as is)."""
        return SandboxInfo.from_json(self._json("POST", f"/api/v1/sandbox/{_seg(sandbox_id)}/resume",
                                                resend_safe=True, timeout=max(self.timeout, _config.PLACEMENT_TIMEOUT)))

    def connect(self, sandbox_id: str) -> SandboxInfo:
        """Checks that the sandbox exists and is the caller's, resuming it if paused."""
        return SandboxInfo.from_json(self._json("POST", f"/api/v1/sandbox/{_seg(sandbox_id)}/connect",
                                                resend_safe=True, timeout=max(self.timeout, _config.PLACEMENT_TIMEOUT)))

    def events(self, *, since: Optional[str] = None, sandbox_id: Optional[str] = None,
               types: Optional[Iterable[str]] = None, follow: bool = True) -> Iterator[Event]:
        """Iterates over lifecycle events (created, placed, active, paused, resumed, moved,
        released, timed_out, failed, removed) of the caller's sandboxes, in order.

        ``since`` is an event id to resume after (``"0"``: the oldest kept; None: from now).
        With ``follow`` (the default) it waits for new events and reconnects, without losing
        or repeating one, when the connection drops; without, it stops once caught up.
        """
        return _events.iterate(self, since=since, sandbox_id=sandbox_id, types=types, follow=follow)

    def release(self, sandbox_id: str) -> None:
        """Gives a sandbox back; it is destroyed, never reused by another user."""
        self._json("POST", "/api/v1/sandbox/release", json_body={"sandbox_id": sandbox_id},
                   idempotency_key=new_idempotency_key())

    def stats(self) -> PoolStats:
        """Returns the pool's counts by status and its bounds."""
        return PoolStats.from_json(self._json("GET", "/api/v1/sandbox/stats"))

    # --- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Closes idle connections. The client must not be used afterwards."""
        self._transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, user_id={self._user_id!r})"


def _rfc3339(value: Any) -> Optional[str]:
    """Formats a datetime for a query (a string is passed as is)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("created_after/created_before need a timezone-aware datetime")
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise TypeError(f"expected a datetime or an RFC 3339 string, got {type(value).__name__}")


def _seg(value: str) -> str:
    """Quotes one path segment so an id can never change the route."""
    return urllib.parse.quote(value, safe="")
