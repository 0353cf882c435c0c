"""HTTP transport: connection pool, bounded retries, token renewal on 401, typed errors.

One connection serves one request at a time: a request takes a connection from
the idle pool (or opens one) and gives it back once the response is read, so
any number of threads can share one transport.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import select
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from . import errors

logger = logging.getLogger("cloud_sandbox")

# Idle connections older than this are dropped instead of reused: servers close
# idle keep-alive connections, and a request on a dead one fails ambiguously.
_MAX_IDLE_SECONDS = 30.0
_MAX_IDLE_CONNECTIONS = 16
_SNIPPET = 200
# The Raft index of the state an answer reflects; sent back, it makes any node
# wait (bounded) until it has applied that much before serving (read your writes).
INDEX_HEADER = "X-Cloud-Sandbox-Index"

Body = Union[bytes, IO[bytes], Iterable[bytes], None]

# Bytes per socket write when a body is streamed from a file object: large
# enough that a 1 GiB upload is not 131,072 small writes.
_SEND_BLOCK = 256 << 10


@dataclass
class RetryPolicy:
    """How failed requests are retried.

    Connection errors, HTTP 503 and HTTP 429 are retried up to ``max_attempts``
    attempts in all, waiting ``Retry-After`` when the server sends it (capped at
    ``max_retry_after``) and an exponential backoff with jitter otherwise
    (``initial_backoff`` doubling up to ``max_backoff``).
    """

    max_attempts: int = 5
    initial_backoff: float = 0.25
    max_backoff: float = 5.0
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def backoff(self, failures: int) -> float:
        """Returns the wait after the given number of consecutive failures (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * (2 ** max(0, failures - 1)))
        # Jitter in [base/2, base] so many clients do not retry in lockstep.
        return base * (0.5 + random.random() / 2)


class TokenSource:
    """What the transport needs from the token manager."""

    can_renew: bool = False

    def token(self) -> Optional[str]:  # pragma: no cover - interface
        """Returns a valid access token, renewing it when needed."""
        raise NotImplementedError

    def invalidate(self, used: str) -> None:  # pragma: no cover - interface
        """Marks the given token as refused so the next token() renews it."""
        raise NotImplementedError

    def renews_after(self, refusal: "errors.SandboxError") -> bool:
        """Whether a 401 ``refusal`` of an authenticated request is worth one renewal and retry."""
        return self.can_renew


class _Retryable(Exception):
    """A failure where the request was certainly not applied, or may safely be resent."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Parses a Retry-After header (seconds or an HTTP date) into seconds, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Response:
    """A response whose body has been read completely."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes, method: str, path: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.method = method
        self.path = path

    def json(self) -> Any:
        """Decodes the body as JSON; a malformed body raises ServerError with a clear message."""
        return decode_json(self.body, self.status, self.method, self.path)


class StreamResponse:
    """A response whose body is read as it arrives; close it when done."""

    def __init__(self, transport: "Transport", conn: http.client.HTTPConnection,
                 raw: http.client.HTTPResponse, method: str, path: str) -> None:
        self.status = raw.status
        self.headers = raw.headers
        self.method = method
        self.path = path
        self._transport = transport
        self._conn: Optional[http.client.HTTPConnection] = conn
        self._raw = raw

    @property
    def raw(self) -> http.client.HTTPResponse:
        """The underlying file-like response (for readers such as tarfile)."""
        return self._raw

    def iter_lines(self) -> Iterator[bytes]:
        """Yields body lines (without the newline) as they arrive."""
        try:
            while True:
                line = self._raw.readline()
                if not line:
                    return
                line = line.rstrip(b"\r\n")
                if line:
                    yield line
        except socket.timeout as e:
            self.abort()
            raise errors.TimeoutError(
                "timed out waiting for more output", method=self.method, path=self.path) from e
        except (OSError, http.client.HTTPException) as e:
            self.abort()
            raise errors.ConnectionError(
                f"connection lost while streaming: {e}", method=self.method, path=self.path) from e

    def set_timeout(self, timeout: Optional[float]) -> None:
        """Sets how long a read may wait for more of the body (None: no limit)."""
        if self._conn is not None and self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)

    def shutdown(self) -> None:
        """Ends the connection from another thread: a read blocked on it returns at once.

        (Closing would not wake it, and would wait for the lock the blocked read holds.)
        """
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def abort(self) -> None:
        """Drops the connection without reading the rest of the body."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Gives the connection back when the body was read to the end, else drops it."""
        if self._conn is None:
            return
        if self._raw.isclosed():
            self._transport._give(self._conn)
            self._conn = None
        else:
            self.abort()

    def __enter__(self) -> "StreamResponse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_json(body: bytes, status: int, method: str, path: str) -> Any:
    """Decodes a JSON body or raises ServerError naming the request and the bad body."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        snippet = body[:_SNIPPET].decode("utf-8", "replace")
        raise errors.ServerError(
            f"malformed JSON in response to {method} {path} (HTTP {status}): {e}; body starts with {snippet!r}",
            status=status, method=method, path=path,
        ) from e


def error_from_response(status: int, headers: Mapping[str, str], body: bytes, reason: str,
                        method: str, path: str) -> errors.SandboxError:
    """Builds the typed exception for an error response, keeping the server's message."""
    message, code = "", None
    try:
        doc = json.loads(body.decode("utf-8"))
        if isinstance(doc, dict):
            message = str(doc.get("error") or doc.get("message") or "")
            code = doc.get("code") if isinstance(doc.get("code"), str) else None
    except (UnicodeDecodeError, ValueError):
        message = body[:_SNIPPET].decode("utf-8", "replace").strip()
    if not message:
        message = reason or f"HTTP {status}"
    cls = errors.error_for_status(status)
    if cls is errors.NotFoundError:
        cls = errors.refine_not_found(path, message)
    kwargs: Dict[str, Any] = {"status": status, "code": code, "method": method, "path": path}
    if cls in (errors.RateLimitError, errors.ServiceUnavailableError):
        kwargs["retry_after"] = parse_retry_after(headers.get("Retry-After"))
    return cls(message, **kwargs)


class Transport:
    """Sends requests to one server with pooling, retries and authentication."""

    def __init__(self, base_url: str, *, timeout: float, retry: RetryPolicy,
                 ssl_context: Optional[ssl.SSLContext] = None, user_agent: str = "cloud-sandbox-python") -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._ssl = ssl_context
        self.timeout = timeout
        self.retry = retry
        self.user_agent = user_agent
        self.auth: Optional[TokenSource] = None
        self._lock = threading.Lock()
        self._idle: List[Tuple[http.client.HTTPConnection, float]] = []
        self._closed = False
        self._index = 0  # highest X-Cloud-Sandbox-Index seen; guarded by _lock

    # --- connection pool ----------------------------------------------------

    def _new_conn(self) -> http.client.HTTPConnection:
        if self._https:
            ctx = self._ssl or ssl.create_default_context()
            return http.client.HTTPSConnection(self._host, self._port, context=ctx, blocksize=_SEND_BLOCK)
        return http.client.HTTPConnection(self._host, self._port, blocksize=_SEND_BLOCK)

    def _take(self) -> http.client.HTTPConnection:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if now - since <= _MAX_IDLE_SECONDS and not _dropped(conn):
                    return conn
                conn.close()
        return self._new_conn()

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        """Closes every idle connection; requests still running finish normally."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    # --- consistency ----------------------------------------------------------

    @property
    def last_index(self) -> int:
        """The highest ``X-Cloud-Sandbox-Index`` any answer carried (0 before the first)."""
        with self._lock:
            return self._index

    def _note_index(self, headers: Mapping[str, str]) -> None:
        value = headers.get(INDEX_HEADER)
        if not value:
            return
        try:
            index = int(value)
        except ValueError:
            return
        with self._lock:
            if index > self._index:
                self._index = index

    # --- requests -------------------------------------------------------------

    def url(self, path: str, query: Optional[Mapping[str, Any]] = None) -> str:
        """Returns the request target for a path relative to the base URL."""
        target = self._prefix + path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            target += "?" + urllib.parse.urlencode(pairs)
        return target

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        body: Body = None,
        content_type: Optional[str] = None,
        accept: str = "application/json",
        auth: bool = True,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
        stream: bool = False,
        resend_safe: Optional[bool] = None,
    ) -> Union[Response, StreamResponse]:
        """Sends a request, retrying what is safe to retry, and returns the response.

        Raises the typed exception of :mod:`cloud_sandbox.errors` for any error status.
        Every request carries the highest ``X-Cloud-Sandbox-Index`` this transport has
        seen, so a node that lags a write this client saw waits for it before answering.
        ``resend_safe`` says whether a request whose connection broke after it was
        sent may be sent again; it defaults to true for GET, PUT and DELETE and for
        requests carrying an idempotency key.
        """
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            content_type = "application/json"
        # A body that can be read only once (an iterator, a pipe) is sent
        # chunked, and never sent twice: a retry would send what is left.
        replayable = body is None or isinstance(body, (bytes, bytearray)) or _seekable(body)
        if resend_safe is None:
            resend_safe = method in ("GET", "HEAD", "PUT", "DELETE") or idempotency_key is not None
        if not replayable:
            resend_safe = False
        target = self.url(path, query)
        timeout = self.timeout if timeout is None else timeout
        failures = 0
        renewed = False
        while True:
            headers = {"User-Agent": self.user_agent, "Accept": accept}
            if content_type:
                headers["Content-Type"] = content_type
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            # Whatever node serves this sees at least what this client saw.
            index = self.last_index
            if index:
                headers[INDEX_HEADER] = str(index)
            token = None
            if auth and self.auth is not None:
                token = self.auth.token()
                if token:
                    headers["Authorization"] = "Bearer " + token
            if body is not None and not isinstance(body, (bytes, bytearray)) and replayable:
                body.seek(0, 2)  # type: ignore[union-attr]
                headers["Content-Length"] = str(body.tell())  # type: ignore[union-attr]
                body.seek(0)  # type: ignore[union-attr]
            try:
                conn, raw = self._send(method, target, path, body, headers, timeout, resend_safe)
            except _Retryable as e:
                failures += 1
                if failures >= self.retry.max_attempts:
                    raise errors.ConnectionError(
                        f"cannot reach {self.base_url} after {failures} attempts: {e.cause}",
                        method=method, path=path) from e.cause
                delay = self.retry.backoff(failures)
                logger.info("retrying %s %s after connection error (%s), attempt %d/%d, wait %.2fs",
                            method, path, e.cause, failures + 1, self.retry.max_attempts, delay)
                self.retry.sleep(delay)
                continue

            status = raw.status
            self._note_index(raw.headers)
            if status < 400:
                if stream:
                    return StreamResponse(self, conn, raw, method, path)
                data = self._read_all(conn, raw, method, path)
                return Response(status, raw.headers, data, method, path)

            data = self._read_all(conn, raw, method, path)
            if not replayable:
                raise error_from_response(status, raw.headers, data, raw.reason, method, path)
            if status == 401 and token and not renewed and self.auth is not None:
                refusal = error_from_response(status, raw.headers, data, raw.reason, method, path)
                if not self.auth.renews_after(refusal):
                    raise refusal
                # Expired before the client expected it (clocks disagree), or
                # revoked: renew once and resend.
                renewed = True
                logger.info("renewing access token after 401 (%s) on %s %s", refusal.message, method, path)
                self.auth.invalidate(token)
                continue
            if status in (429, 503):
                failures += 1
                if failures < self.retry.max_attempts:
                    after = parse_retry_after(raw.headers.get("Retry-After"))
                    delay = min(after, self.retry.max_retry_after) if after is not None else self.retry.backoff(failures)
                    logger.info("retrying %s %s after HTTP %d, attempt %d/%d, wait %.2fs",
                                method, path, status, failures + 1, self.retry.max_attempts, delay)
                    self.retry.sleep(delay)
                    continue
            raise error_from_response(status, raw.headers, data, raw.reason, method, path)

    def _send(self, method: str, target: str, path: str, body: Body, headers: Dict[str, str],
              timeout: float, resend_safe: bool) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        # Two tries: the first may land on a pooled connection the server closed while idle.
        for try_ in range(2):
            conn = self._take()
            reused = conn.sock is not None
            try:
                if conn.sock is None:
                    conn.timeout = timeout
                    conn.connect()
                    # Headers and body may go out in separate writes; don't let Nagle hold the second.
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                else:
                    conn.sock.settimeout(timeout)
            except socket.timeout as e:
                conn.close()
                raise errors.TimeoutError(
                    f"timed out after {timeout:g}s connecting to {self.base_url}", method=method, path=path) from e
            except OSError as e:
                conn.close()
                raise _Retryable(e) from e  # nothing was sent
            try:
                if body is not None and not isinstance(body, (bytes, bytearray)) and _seekable(body):
                    body.seek(0)  # type: ignore[union-attr]
                try:
                    conn.request(method, target, body=body, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    # The server may have answered before reading the whole
                    # body (413: the disk is full) and closed: read that answer.
                    early = _early_response(conn, method)
                    if early is None:
                        raise
                    return conn, early
                return conn, conn.getresponse()
            except socket.timeout as e:
                conn.close()
                raise errors.TimeoutError(
                    f"no response within {timeout:g}s", method=method, path=path) from e
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if resend_safe and reused and try_ == 0 and isinstance(
                        e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
                    continue  # most likely a pooled connection the server had closed
                if resend_safe:
                    raise _Retryable(e) from e
                raise errors.ConnectionError(
                    f"connection lost during the request ({e}); not resent because it may have been applied",
                    method=method, path=path) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_all(self, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse,
                  method: str, path: str) -> bytes:
        try:
            data = raw.read()
        except socket.timeout as e:
            conn.close()
            raise errors.TimeoutError("timed out reading the response", method=method, path=path) from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise errors.ConnectionError(f"connection lost reading the response: {e}",
                                         method=method, path=path) from e
        self._give(conn)
        return data


def _seekable(body: Any) -> bool:
    try:
        return bool(body.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _early_response(conn: http.client.HTTPConnection, method: str) -> Optional[http.client.HTTPResponse]:
    """Reads a response the server sent while the request body was still going out."""
    sock = conn.sock
    if sock is None:
        return None
    try:
        sock.settimeout(5)
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        return resp
    except (OSError, http.client.HTTPException):
        return None


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle connection is readable: the server closed it (or sent junk)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
