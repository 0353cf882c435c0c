"""Lifecycle events: ``GET /api/v1/events`` (Server-Sent Events) as an iterator."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, Optional

from . import errors
from .models import parse_time

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

logger = logging.getLogger("cloud_sandbox")

EVENTS_PATH = "/api/v1/events"


@dataclass
class Event:
    """One step in a sandbox's life, as the cluster's Raft log decided it.

    ``id`` (``"<raft index>-<position>"``) names the event on every node: pass it
    as ``since`` to resume right after it.
    """

    id: str
    type: str
    sandbox_id: str
    time: Optional[datetime] = None
    session_id: str = ""
    owner: str = ""
    state: str = ""
    reason: str = ""
    node: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Event":
        """Builds an Event from the JSON of one ``data:`` line."""
        def s(key: str) -> str:
            v = d.get(key)
            return v if isinstance(v, str) else ""
        return cls(id=s("id"), type=s("type"), sandbox_id=s("sandbox_id"), time=parse_time(d.get("time")),
                   session_id=s("session_id"), owner=s("owner"), state=s("state"), reason=s("reason"),
                   node=s("node"), raw=dict(d))


def parse_sse(lines: Iterable[bytes]) -> Iterator[Dict[str, str]]:
    """Groups Server-Sent Event lines into ``{"id", "event", "data"}`` dicts.

    The server sends ``id:`` and ``event:`` before the one ``data:`` line of each
    event, so an event is complete at its data line; blank lines (which the
    transport drops anyway), comments (``: keepalive``) and ``retry:`` are skipped.
    """
    ev: Dict[str, str] = {}
    for raw in lines:
        line = raw.decode("utf-8", "replace")
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name in ("id", "event"):
            ev[name] = value
        elif name == "data":
            ev["data"] = value
            yield ev
            ev = {}


def iterate(
    client: "Client",
    *,
    since: Optional[str] = None,
    sandbox_id: Optional[str] = None,
    types: Optional[Iterable[str]] = None,
    follow: bool = True,
    reconnects: int = 5,
) -> Iterator[Event]:
    """Yields events in order, reconnecting (at most ``reconnects`` times in a
    row, with backoff) from the last one seen, so none is lost or repeated.

    ``since``: an event id to start after, ``"0"`` for the oldest kept, None for now.
    """
    after = since
    failures = 0
    while True:
        query: Dict[str, Any] = {}
        if after is not None:
            query["after"] = after
        if sandbox_id:
            query["sandbox_id"] = sandbox_id
        if types:
            query["type"] = ",".join(types)
        if not follow:
            query["follow"] = "false"
        try:
            # No client-side read timeout: the server sends a keepalive every 15 s.
            with client._stream("GET", EVENTS_PATH, query=query, accept="text/event-stream",
                                timeout=60.0) as resp:
                if after is None:
                    # From now: later reconnects must not skip what happens meanwhile.
                    idx = resp.headers.get("X-Cloud-Sandbox-Index")
                    after = idx if idx else None
                for ev in parse_sse(resp.iter_lines()):
                    if ev.get("event") == "gap":
                        logger.warning("event stream: some events were dropped from the server's log: %s",
                                       ev.get("data", ""))
                        continue
                    if "data" not in ev:
                        continue
                    try:
                        doc = json.loads(ev["data"])
                    except ValueError as e:
                        raise errors.ServerError(f"malformed event data: {e}", path=EVENTS_PATH) from e
                    event = Event.from_json(doc)
                    after = event.id or ev.get("id") or after
                    failures = 0
                    yield event
            if not follow:
                return
        except (errors.ConnectionError, errors.TimeoutError):
            failures += 1
            if failures > reconnects:
                raise
            time.sleep(min(0.2 * 2 ** failures, 5.0))
