"""Pseudo-terminals: ``sandbox.pty`` (names follow E2B's SDK).

A pty runs an interactive program (a login shell by default) on a terminal
inside the sandbox. Its output, one stream of terminal bytes as text, arrives
on ``on_data``; input, resizes and signals are small requests. Like every
background process it outlives the client: ``sandbox.pty.connect(pid)``
reattaches.

Example::

    term = sandbox.pty.create(rows=24, cols=80, on_data=lambda s: print(s, end=""))
    term.send_input("python3 -q\\n")
    term.send_input("print(6 * 7)\\n")
    term.resize(rows=40, cols=120)
    term.kill()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from ._exec import OutputCallback
from .commands import CommandHandle, CommandResult, Commands

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Sandbox


class PtyHandle(CommandHandle):
    """A process on a terminal: a :class:`CommandHandle` that also takes keystrokes and resizes."""

    def send_input(self, data: str) -> None:
        """Types ``data`` into the terminal ("\\n" is Enter, "\\x03" is Ctrl-C)."""
        self._commands.send_stdin(self.pid, data)

    def resize(self, rows: int, cols: int) -> None:
        """Changes the terminal's size; the program gets SIGWINCH."""
        self._commands._client._request("POST", self._commands._path(self.pid, "/resize"), json_body={
            "sandbox_id": self._commands._sandbox_id, "rows": int(rows), "cols": int(cols)})

    @property
    def output(self) -> str:
        """Everything the terminal printed that this handle received."""
        return self.stdout

    def wait(self, timeout: Optional[float] = None) -> CommandResult:
        """Waits for the program to end; its terminal output is in ``stdout`` of the result."""
        return super().wait(timeout)


class Pty:
    """``sandbox.pty``: start, reach and drive programs on a pseudo-terminal."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._commands = Commands(sandbox)

    def create(self, rows: int = 24, cols: int = 80, *, on_data: Optional[OutputCallback] = None,
               cmd: Optional[Sequence[str]] = None, envs: Optional[Mapping[str, str]] = None,
               cwd: Optional[str] = None, timeout: Optional[float] = None,
               tag: Optional[str] = None) -> PtyHandle:
        """Starts ``cmd`` (default: an interactive login shell, ``bash -i -l``) on a ``rows`` x ``cols`` terminal.

        ``TERM`` is ``xterm-256color`` unless ``envs`` sets it. The program lives
        as long as the sandbox unless ``timeout`` (seconds) says otherwise.
        """
        info = self._commands._start(list(cmd) if cmd is not None else None, envs=envs, cwd=cwd, timeout=timeout,
                                     tag=tag, pty={"rows": int(rows), "cols": int(cols)})
        return PtyHandle(self._commands, info, on_data=on_data)

    def connect(self, pid: int, *, offset: int = 0, on_data: Optional[OutputCallback] = None) -> PtyHandle:
        """Reattaches to a terminal program and replays its output from ``offset``."""
        return PtyHandle(self._commands, self._commands.get(pid), offset=offset, on_data=on_data)

    def send_stdin(self, pid: int, data: str) -> None:
        """Types ``data`` into terminal ``pid`` (E2B's ``pty.send_stdin``)."""
        self._commands.send_stdin(pid, data)

    def resize(self, pid: int, rows: int, cols: int) -> None:
        """Resizes terminal ``pid``."""
        self._commands._client._request("POST", self._commands._path(pid, "/resize"), json_body={
            "sandbox_id": self._commands._sandbox_id, "rows": int(rows), "cols": int(cols)})

    def kill(self, pid: int) -> bool:
        """Kills the program on terminal ``pid``; False if it had already ended."""
        return self._commands.kill(pid)


__all__ = ["Pty", "PtyHandle"]
