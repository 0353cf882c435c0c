"""Execute requests: the request body and the NDJSON stream reader."""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import errors
from .models import ExecutionResult

OutputCallback = Callable[[str], None]
Command = Union[str, Sequence[str]]

# Extra seconds the HTTP read may take beyond the command's own timeout: the
# server needs time to kill the process and send the result.
RESPONSE_GRACE = 30.0


def exec_body(
    sandbox_id: str,
    *,
    code: Optional[str] = None,
    language: Optional[str] = None,
    command: Optional[Command] = None,
    timeout: Optional[float] = None,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    stdin: Optional[str] = None,
) -> Dict[str, Any]:
    """Builds the JSON body of POST /api/v1/execute[/stream]."""
    body: Dict[str, Any] = {"sandbox_id": sandbox_id}
    if code is not None:
        body["code"] = code
        body["language"] = language or "python"
    elif command is not None:
        if isinstance(command, str):
            body["command"] = command  # the server runs it with /bin/sh -c
        else:
            argv = list(command)
            if not argv or not all(isinstance(a, str) for a in argv):
                raise ValueError("command must be a string or a non-empty list of strings")
            body["command"] = argv
    else:
        raise ValueError("either code or command is required")
    if timeout is not None:
        body["timeout"] = int(timeout) if float(timeout).is_integer() else timeout
    if env:
        body["env"] = {str(k): str(v) for k, v in env.items()}
    if cwd is not None:
        body["cwd"] = cwd
    if stdin is not None:
        body["stdin"] = stdin
    return body


def read_stream(
    lines: Iterable[bytes],
    on_stdout: Optional[OutputCallback],
    on_stderr: Optional[OutputCallback],
    path: str,
) -> ExecutionResult:
    """Consumes NDJSON events, calling the callbacks as chunks arrive, and returns the final result."""
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
        kind = event.get("type")
        data = event.get("data")
        if kind == "stdout" and isinstance(data, str):
            out.append(data)
            if on_stdout is not None:
                on_stdout(data)
        elif kind == "stderr" and isinstance(data, str):
            err.append(data)
            if on_stderr is not None:
                on_stderr(data)
        elif kind == "result":
            result = ExecutionResult.from_json(event)
            # The result line may leave out the output it already streamed.
            if not result.stdout and out:
                result.stdout = "".join(out)
            if not result.stderr and err:
                result.stderr = "".join(err)
            return result
        elif kind == "error":
            message = str(event.get("data") or event.get("error") or event.get("message") or "execution failed")
            code = event.get("code") if isinstance(event.get("code"), str) else None
            raise errors.SandboxError(message, code=code, method="POST", path=path)
    raise errors.ServerError("the output stream ended without a result", status=200, method="POST", path=path)
