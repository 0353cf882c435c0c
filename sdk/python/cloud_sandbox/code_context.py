"""Stateful code contexts: a Python interpreter in the sandbox that keeps its
variables, imports and functions from one ``run_code`` call to the next.

Names follow E2B's code-interpreter SDK (``Context``, ``Execution``, ``Logs``,
``Result``, ``ExecutionError``) so code written for it reads the same here::

    ctx = sandbox.create_code_context(cwd="/workspace", envs={"MODE": "test"})
    sandbox.run_code("x = 41", context=ctx)
    execution = sandbox.run_code("x + 1", context=ctx)
    print(execution.text)  # 42
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Union

from . import errors
from ._exec import RESPONSE_GRACE, OutputCallback
from .models import _b, _i, _s, parse_time

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

CONTEXTS_PATH = "/api/v1/contexts"


@dataclass
class Context:
    """A code context: one interpreter with its own state, cwd and environment."""

    id: str
    language: str = "python"
    cwd: str = ""
    sandbox_id: str = ""
    created_at: Optional[datetime] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Context":
        return cls(id=_s(d, "id"), language=_s(d, "language") or "python", cwd=_s(d, "cwd"),
                   sandbox_id=_s(d, "sandbox_id"), created_at=parse_time(d.get("created_at")), raw=d)


# The MIME types a value may be shown as, and the Result attribute for each.
_MIME = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "text/latex": "latex",
    "application/json": "json",
}


@dataclass
class Result:
    """A displayed value. ``text`` is its repr; ``html``, ``png`` (base64), ``svg``,
    ``markdown``, ``jpeg`` (base64), ``latex`` and ``json`` are set when the object
    offers the matching ``_repr_*_`` method. ``data`` holds them all by MIME type."""

    data: Dict[str, str] = field(default_factory=dict)
    is_main_result: bool = False

    def _get(self, mime: str) -> Optional[str]:
        return self.data.get(mime)

    text = property(lambda self: self._get("text/plain"))
    html = property(lambda self: self._get("text/html"))
    markdown = property(lambda self: self._get("text/markdown"))
    svg = property(lambda self: self._get("image/svg+xml"))
    png = property(lambda self: self._get("image/png"))
    jpeg = property(lambda self: self._get("image/jpeg"))
    latex = property(lambda self: self._get("text/latex"))

    @property
    def json(self) -> Any:
        """The ``_repr_json_`` value, decoded; None when there is none."""
        raw = self._get("application/json")
        return None if raw is None else json.loads(raw)

    def formats(self) -> List[str]:
        """The attribute names this result has a value for, e.g. ``["text", "html"]``."""
        return [_MIME[m] for m in self.data if m in _MIME]

    def __str__(self) -> str:
        return self.text or ""

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Result":
        data = d.get("data")
        data = {str(k): v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
        return cls(data=data, is_main_result=_b(d, "is_main_result"))


@dataclass
class ExecutionError:
    """An exception the code raised and did not catch."""

    name: str
    value: str
    traceback: str

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ExecutionError":
        return cls(name=_s(d, "name"), value=_s(d, "value"), traceback=_s(d, "traceback"))


@dataclass
class Logs:
    """What the code printed, as the chunks it arrived in (one chunk unless streamed)."""

    stdout: List[str] = field(default_factory=list)
    stderr: List[str] = field(default_factory=list)


@dataclass
class Execution:
    """The outcome of ``run_code(..., context=...)``.

    ``results`` holds the value of the cell's last expression (``text`` gives its
    repr); ``error`` is set when the code raised; ``timed_out`` when the timeout
    interrupted it (the context keeps its state); ``restarted`` when the
    context's interpreter had to be started afresh (its state is gone).
    """

    results: List[Result] = field(default_factory=list)
    logs: Logs = field(default_factory=Logs)
    error: Optional[ExecutionError] = None
    execution_count: int = 0
    timed_out: bool = False
    restarted: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def text(self) -> Optional[str]:
        """The repr of the cell's final expression, or None when it had none."""
        for r in self.results:
            if r.is_main_result:
                return r.text
        return None

    @property
    def stdout(self) -> str:
        return "".join(self.logs.stdout)

    @property
    def stderr(self) -> str:
        return "".join(self.logs.stderr)

    @classmethod
    def from_json(cls, d: Dict[str, Any], stdout: Optional[List[str]] = None,
                  stderr: Optional[List[str]] = None) -> "Execution":
        if stdout is None:
            stdout = [_s(d, "stdout")] if _s(d, "stdout") else []
        if stderr is None:
            stderr = [_s(d, "stderr")] if _s(d, "stderr") else []
        err = d.get("error")
        return cls(
            results=[Result.from_json(r) for r in d.get("results") or [] if isinstance(r, dict)],
            logs=Logs(stdout=stdout, stderr=stderr),
            error=ExecutionError.from_json(err) if isinstance(err, dict) else None,
            execution_count=_i(d, "execution_count"),
            timed_out=_b(d, "timed_out"),
            restarted=_b(d, "restarted"),
            stdout_truncated=_b(d, "stdout_truncated"),
            stderr_truncated=_b(d, "stderr_truncated"),
            duration_ms=_i(d, "duration_ms"),
            raw=d,
        )


ContextLike = Union[Context, str]


def context_id(context: ContextLike) -> str:
    cid = context.id if isinstance(context, Context) else context
    if not isinstance(cid, str) or not cid:
        raise ValueError("context must be a Context or a context id")
    return cid


def _path(context: ContextLike, suffix: str = "") -> str:
    from .client import _seg  # the client's own path-segment quoting
    return f"{CONTEXTS_PATH}/{_seg(context_id(context))}{suffix}"


def create(client: "Client", sandbox_id: str, language: str, cwd: Optional[str],
           envs: Optional[Mapping[str, str]]) -> Context:
    body: Dict[str, Any] = {"sandbox_id": sandbox_id, "language": language}
    if cwd is not None:
        body["cwd"] = cwd
    if envs:
        body["env"] = {str(k): str(v) for k, v in envs.items()}
    return Context.from_json(client._json("POST", CONTEXTS_PATH, json_body=body))


def list_contexts(client: "Client", sandbox_id: str) -> List[Context]:
    doc = client._json("GET", CONTEXTS_PATH, query={"sandbox_id": sandbox_id})
    return [Context.from_json(c) for c in doc.get("contexts") or [] if isinstance(c, dict)]


def restart(client: "Client", context: ContextLike) -> Context:
    return Context.from_json(client._json("POST", _path(context, "/restart")))


def remove(client: "Client", context: ContextLike) -> None:
    client._json("DELETE", _path(context))


def run(client: "Client", context: ContextLike, code: str, timeout: Optional[float],
        on_stdout: Optional[OutputCallback], on_stderr: Optional[OutputCallback]) -> Execution:
    body: Dict[str, Any] = {"code": code}
    if timeout is not None:
        body["timeout"] = int(timeout) if float(timeout).is_integer() else timeout
    http_timeout = max(client.timeout, float(timeout or 30) + RESPONSE_GRACE)
    if on_stdout is None and on_stderr is None:
        return Execution.from_json(client._json("POST", _path(context, "/run"), json_body=body, timeout=http_timeout))
    path = _path(context, "/run/stream")
    with client._stream("POST", path, json_body=body, timeout=http_timeout,
                        accept="application/x-ndjson") as resp:
        return _read_stream(resp.iter_lines(), on_stdout, on_stderr, path)


def _read_stream(lines: Iterable[bytes], on_stdout: Optional[OutputCallback],
                 on_stderr: Optional[OutputCallback], path: str) -> Execution:
    out: List[str] = []
    err: List[str] = []
    for line in lines:
        try:
            event = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise errors.ServerError(f"malformed stream event {line[:200]!r}: {e}",
                                     status=200, method="POST", path=path) from e
        if not isinstance(event, dict):
            continue
        kind, data = event.get("type"), event.get("data")
        if kind == "stdout" and isinstance(data, str):
            out.append(data)
            if on_stdout is not None:
                on_stdout(data)
        elif kind == "stderr" and isinstance(data, str):
            err.append(data)
            if on_stderr is not None:
                on_stderr(data)
        elif kind == "result":
            return Execution.from_json(event, stdout=out, stderr=err)
        elif kind == "error":
            raise errors.SandboxError(str(data or "execution failed"), method="POST", path=path)
    raise errors.ServerError("the output stream ended without a result", status=200, method="POST", path=path)
