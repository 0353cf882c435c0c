"""Integration tests against a live sandboxd with real containers.

Set CLOUD_SANDBOX_URL (tests/run_integration.sh starts a server and does). Without
it these tests skip, except under CI=true, where a missing server is a failure.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from typing import Any, Iterator, List, Optional

import support  # noqa: F401 - puts the package on sys.path

import cloud_sandbox as cs
from cloud_sandbox import Client, Sandbox
from cloud_sandbox._auth import jwt_claims

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URL = os.environ.get("CLOUD_SANDBOX_URL", "")
RUN = uuid.uuid4().hex[:8]

# The user guide's "Basic usage" block, character for character.
QUICK_START = '''from cloud_sandbox import Sandbox

# Create a sandbox with automatic resource management
with Sandbox.create(
    base_url="http://localhost:8080",
    user_id="my-user-id",
) as sandbox:
    # Execute Python code
    result = sandbox.run_code("print('Hello, World!')")
    print(result.stdout)  # Output: Hello, World!

    # Run shell commands
    result = sandbox.run_command("ls -la /workspace")
    print(result.stdout)

    # File operations
    sandbox.write_file("/workspace/test.py", "x = 42")
    files = sandbox.list_files("/workspace")
'''

GUIDE_CANDIDATES = [
    os.path.join(ROOT, "..", "..", "docs", "user-guide.md"),
    # shared/ lies beside the repository in development and in CI.
    os.path.join(ROOT, "..", "..", "..", "shared", "docs", "user-guide.md"),
    "/work/shared/docs/user-guide.md",
]


def setUpModule() -> None:
    if URL:
        return
    if os.environ.get("CI") == "true":
        raise RuntimeError("CLOUD_SANDBOX_URL is not set, and CI=true forbids skipping the integration tests; "
                           "run sdk/python/tests/run_integration.sh")
    raise unittest.SkipTest("CLOUD_SANDBOX_URL is not set; run sdk/python/tests/run_integration.sh "
                            "to test against a live sandboxd")


def _client(user: str) -> Client:
    return Client(URL, f"sdk-it-{RUN}-{user}")


class QuickStartTest(unittest.TestCase):
    def test_snippet_matches_the_guide(self) -> None:
        guides = [p for p in GUIDE_CANDIDATES if os.path.exists(p)]
        if not guides:
            self.skipTest("user guide not found next to the repository")
        with open(guides[0], encoding="utf-8") as f:
            text = f.read()
        blocks = re.findall(r"```python\n(.*?)```", text, re.S)
        self.assertIn(QUICK_START, blocks)

    def test_quick_start_runs_verbatim_and_prints_hello_world(self) -> None:
        code = QUICK_START
        if URL.rstrip("/") != "http://localhost:8080":
            # The only edit: point the snippet at the server under test.
            code = code.replace("http://localhost:8080", URL.rstrip("/"))
        env = dict(os.environ, PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=300, env=env, cwd=tempfile.gettempdir())
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertTrue(proc.stdout.startswith("Hello, World!\n"), proc.stdout)


class ReadmeTest(unittest.TestCase):
    def test_every_python_example_in_the_readme_runs(self) -> None:
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        self.assertGreaterEqual(len(blocks), 6)
        env = dict(os.environ, PYTHONPATH=ROOT)
        for i, code in enumerate(blocks):
            code = code.replace("http://localhost:8080", URL.rstrip("/"))
            with self.subTest(block=i, first_line=code.splitlines()[0]):
                proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, timeout=300, env=env,
                                      cwd=tempfile.gettempdir())
                self.assertEqual(proc.returncode, 0, proc.stderr)


class SandboxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.client = _client("alice")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()

    def sandbox(self) -> Sandbox:
        sb = self.client.acquire()
        self.addCleanup(sb.close)
        return sb

    def test_files_round_trip_text_and_bytes(self) -> None:
        sb = self.sandbox()
        text = "héllo wörld ✓\nline 2\n"
        blob = bytes(range(256)) * 64
        sb.write_file("/workspace/dir/t.txt", text)
        sb.write_file("/workspace/b.bin", blob)
        self.assertEqual(sb.read_file("/workspace/dir/t.txt"), text)
        self.assertEqual(sb.read_file("/workspace/b.bin", binary=True), blob)
        # The container sees the same bytes.
        self.assertEqual(sb.run_command(["cat", "/workspace/dir/t.txt"]).stdout, text)
        self.assertEqual(sb.run_command("wc -c < /workspace/b.bin").stdout.strip(), str(len(blob)))
        names = {f.name: f for f in sb.list_files("/workspace")}
        self.assertTrue(names["dir"].is_dir)
        self.assertEqual(names["b.bin"].size, len(blob))
        sb.delete_file("/workspace/dir", recursive=True)
        with self.assertRaises(cs.NotFoundError):
            sb.read_file("/workspace/dir/t.txt")

    def test_upload_and_download_dir(self) -> None:
        sb = self.sandbox()
        with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as dst:
            os.makedirs(os.path.join(src, "pkg"))
            with open(os.path.join(src, "main.py"), "w") as f:
                f.write("from pkg import v\nprint(v)\n")
            with open(os.path.join(src, "pkg", "__init__.py"), "w") as f:
                f.write("v = 7\n")
            sb.upload_dir(src, "/workspace/proj")
            self.assertEqual(sb.run_command(["python3", "main.py"], cwd="/workspace/proj").stdout, "7\n")
            count = sb.download_dir("/workspace/proj", dst)
            # Running main.py added pkg/__pycache__; the download must bring that back too.
            got = sorted(os.path.relpath(os.path.join(d, n), dst) for d, _, ns in os.walk(dst) for n in ns)
            self.assertEqual(count, len(got))
            self.assertIn("main.py", got)
            self.assertTrue(any(g.startswith("pkg/__pycache__/") for g in got), got)
            with open(os.path.join(dst, "pkg", "__init__.py")) as f:
                self.assertEqual(f.read(), "v = 7\n")

    def test_command_that_outlives_its_timeout_reports_timed_out(self) -> None:
        result = self.sandbox().run_command("sleep 60", timeout=2)
        self.assertTrue(result.timed_out)
        self.assertFalse(result.ok)

    def test_env_cwd_stdin_and_exit_code(self) -> None:
        sb = self.sandbox()
        cases = [
            ("env", lambda: sb.run_command(["printenv", "FOO"], env={"FOO": "bar"}), "bar\n", 0),
            ("cwd", lambda: sb.run_command("pwd", cwd="/tmp"), "/tmp\n", 0),
            ("stdin", lambda: sb.run_code("import sys; print(sys.stdin.read().upper())", stdin="abc"), "ABC\n", 0),
            ("bash", lambda: sb.run_code("echo $((6*7))", language="bash"), "42\n", 0),
            ("exit code", lambda: sb.run_command("exit 3"), "", 3),
        ]
        for name, call, stdout, code in cases:
            with self.subTest(name):
                result = call()
                self.assertEqual((result.stdout, result.exit_code), (stdout, code), result.stderr)

    def test_streaming_delivers_output_while_the_command_runs(self) -> None:
        sb = self.sandbox()
        # The command waits for a file that only the stdout callback creates: it
        # can print "go seen" only if the callback ran while it was still running.
        code = (
            "import os, time\n"
            "print('ready', flush=True)\n"
            "for _ in range(200):\n"
            "    if os.path.exists('/tmp/go'):\n"
            "        print('go seen', flush=True)\n"
            "        break\n"
            "    time.sleep(0.1)\n"
            "else:\n"
            "    print('no go', flush=True)\n"
        )
        chunks: List[str] = []

        def on_stdout(chunk: str) -> None:
            chunks.append(chunk)
            if "ready" in chunk:
                sb.write_file("/tmp/go", "1")

        result = sb.run_code(code, timeout=60, on_stdout=on_stdout)
        self.assertEqual("".join(chunks), "ready\ngo seen\n")
        self.assertEqual(result.exit_code, 0)

    def test_sandbox_is_released_when_the_with_block_raises(self) -> None:
        with self.assertRaisesRegex(RuntimeError, "boom"):
            with Sandbox.create(client=self.client) as sb:
                sb.run_code("print(1)")
                raise RuntimeError("boom")
        try:
            status = self.client.get_sandbox(sb.sandbox_id).status
        except cs.NotFoundError:
            return
        self.assertIn(status, ("terminating", "terminated"))

    def test_two_users_cannot_see_each_others_sandboxes(self) -> None:
        sb = self.sandbox()
        sb.write_file("/workspace/secret.txt", "alice's")
        with _client("bob") as bob:
            intruder = bob.sandbox(sb.sandbox_id)
            for name, call in [("info", intruder.info), ("read", lambda: intruder.read_file("/workspace/secret.txt")),
                               ("exec", lambda: intruder.run_code("print(1)"))]:
                with self.subTest(name), self.assertRaises(cs.NotFoundError):
                    call()
            self.assertNotIn(sb.sandbox_id, [s.sandbox_id for s in bob.list_sandboxes()])

    def test_errors_are_typed_with_the_servers_message(self) -> None:
        sb = self.sandbox()
        cases = [
            ("unknown language", lambda: sb.run_code("x", language="cobol"), cs.ValidationError, 422),
            ("timeout out of range", lambda: sb.run_command("true", timeout=100000), cs.ValidationError, 422),
            ("relative path", lambda: sb.write_file("relative.txt", "x"), cs.ValidationError, 400),
            ("write outside workspace", lambda: sb.write_file("/etc/cloud-sandbox-test", "x"),
             cs.PermissionDeniedError, 403),
            ("missing file", lambda: sb.read_file("/workspace/none"), cs.NotFoundError, 404),
        ]
        for name, call, cls, status in cases:
            with self.subTest(name), self.assertRaises(cls) as cm:
                call()
            self.assertEqual(cm.exception.status, status)
            self.assertTrue(cm.exception.message)

    def test_retried_acquire_with_one_idempotency_key_returns_one_sandbox(self) -> None:
        # What the SDK does when an acquire's response is lost: send it again with the same key.
        key = uuid.uuid4().hex
        first = self.client._json("POST", "/api/v1/sandbox/acquire", json_body={}, idempotency_key=key)
        second = self.client._json("POST", "/api/v1/sandbox/acquire", json_body={}, idempotency_key=key)
        self.addCleanup(self.client.release, first["sandbox_id"])
        self.assertEqual(first["sandbox_id"], second["sandbox_id"])

    def test_stats(self) -> None:
        stats = self.client.stats()
        self.assertGreaterEqual(stats.max_size, stats.min_size)
        self.assertGreaterEqual(stats.total, stats.active)


class UnifiedLifecycleTest(unittest.TestCase):
    """Issue 14: every sandbox takes options, a new timeout, pause/resume/connect; lists page; events."""

    def test_create_with_options_then_timeout_pause_connect(self) -> None:
        with _client("dora") as c:
            with Sandbox.create(client=c, timeout=600, idle_timeout=300, cpu_count=1, memory_mb=256,
                                metadata={"run": RUN, "kind": "opts"}, envs={"GREETING": "hi"}) as sb:
                info = sb.get_info()
                self.assertEqual(info.metadata, {"run": RUN, "kind": "opts"})
                self.assertEqual(info.env_keys, ["GREETING"])
                self.assertEqual(info.idle_timeout, 300)
                self.assertIsNotNone(info.expires_at)
                left = info.expires_at.timestamp() - time.time()
                self.assertTrue(500 < left <= 601, f"lifetime left {left:.0f}s, want about 600")
                self.assertEqual(sb.run_command("echo $GREETING").stdout, "hi\n")

                later = sb.set_timeout(3600)
                self.assertGreater(later.expires_at.timestamp() - info.expires_at.timestamp(), 2900)

                self.assertEqual(sb.pause().status, "paused")
                with self.assertRaises(cs.ConflictError):
                    sb.run_command("true")
                again = Sandbox.connect(sb.sandbox_id, client=c)
                self.assertEqual(again.get_info().status, "active")
                self.assertEqual(again.run_command("echo back").stdout, "back\n")

    def test_list_filters_by_metadata_and_pages(self) -> None:
        with _client("erin") as c:
            made = []
            for i in range(3):
                sb = Sandbox.create(client=c, metadata={"run": RUN, "kind": "list", "i": str(i)})
                self.addCleanup(sb.close)
                made.append(sb.sandbox_id)
            pages = Sandbox.list(client=c, metadata={"run": RUN, "kind": "list"}, limit=2)
            first = pages.next_items()
            self.assertEqual(len(first), 2)
            self.assertTrue(pages.has_next)
            second = pages.next_items()
            self.assertFalse(pages.has_next)
            # In creation order: a pool sandbox was made before it was handed out.
            listed = [s.sandbox_id for s in first + second]
            self.assertEqual(sorted(listed), sorted(made))
            self.assertEqual(len(set(listed)), 3)
            self.assertEqual([s.sandbox_id for s in Sandbox.list(client=c, metadata={"run": RUN, "i": "1"})], [made[1]])
            self.assertEqual(list(Sandbox.list(client=c, metadata={"run": "nobody"})), [])

    def test_events_tell_a_sandbox_life_and_resume_after_an_id(self) -> None:
        with _client("fred") as c:
            sb = Sandbox.create(client=c)
            sid = sb.sandbox_id
            sb.release()
            sb.close()
            events = list(c.events(since="0", sandbox_id=sid, follow=False))
            types = [e.type for e in events]
            self.assertIn(types[0], ("active", "created"), types)
            self.assertIn("released", types)
            self.assertTrue(all(e.sandbox_id == sid for e in events))
            rest = list(c.events(since=events[0].id, sandbox_id=sid, follow=False))
            self.assertEqual([e.id for e in rest], [e.id for e in events[1:]])
            with _client("mallory") as m:
                self.assertEqual(list(m.events(since="0", sandbox_id=sid, follow=False)), [])

    def test_following_events_sees_a_new_sandbox_live(self) -> None:
        import threading

        with _client("hank") as c:
            seen: List[str] = []
            done = threading.Event()

            def follow() -> None:
                for ev in c.events():  # from now, waiting for more
                    seen.append(ev.type)
                    if ev.type == "released":
                        done.set()
                        return

            t = threading.Thread(target=follow, daemon=True)
            t.start()
            time.sleep(0.5)  # the stream is open before the sandbox is made
            with Sandbox.create(client=c) as sb:
                sb.run_command("true")
            self.assertTrue(done.wait(30), f"no released event within 30 s; saw {seen}")
            self.assertIn(seen[0], ("active", "created"))

    def test_missing_sandbox_and_missing_file_are_told_apart(self) -> None:
        with _client("gus") as c:
            with self.assertRaises(cs.SandboxNotFoundError):
                Sandbox.connect("00000000deadbeef", client=c)
            with Sandbox.create(client=c) as sb:
                with self.assertRaises(cs.FileNotFoundError) as cm:
                    sb.read_file("/workspace/nothing-here")
                self.assertIsInstance(cm.exception, FileNotFoundError)  # the built-in too
                self.assertIsInstance(cm.exception, cs.NotFoundError)


class SessionTest(unittest.TestCase):
    def test_create_pause_resume_delete(self) -> None:
        with _client("carol") as c:
            s = c.sessions.create(cpu_count=1, memory_mb=256)
            self.addCleanup(lambda: _quiet_delete(c, s.session_id))
            self.assertEqual(s.status, "active")
            with s.sandbox() as sb:
                sb.write_file("/workspace/state.txt", "kept")
                self.assertEqual(s.pause().status, "paused")
                with self.assertRaises(cs.ConflictError):
                    sb.run_command("true")
                self.assertEqual(s.resume().status, "active")
                self.assertEqual(sb.read_file("/workspace/state.txt"), "kept")
            self.assertIn(s.session_id, [x.session_id for x in c.sessions.list()])
            self.assertEqual(s.delete().status, "deleted")
            self.assertNotIn(s.session_id, [x.session_id for x in c.sessions.list()])


class CodeContextTest(unittest.TestCase):
    """Stateful code contexts against real sandboxes: what an E2B user relies on."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.client = _client("dora")
        cls.sb = cls.client.acquire()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sb.close()
        cls.client.close()

    def context(self, **kwargs: object) -> cs.Context:
        ctx = self.sb.create_code_context(**kwargs)  # type: ignore[arg-type]
        self.addCleanup(_quiet_remove, self.sb, ctx)
        return ctx

    def test_variables_imports_and_functions_persist_across_three_calls(self) -> None:
        ctx = self.context()
        first = self.sb.run_code("import math\nradius = 2", context=ctx)
        second = self.sb.run_code("def area(r):\n    return round(math.pi * r * r, 2)", context=ctx)
        third = self.sb.run_code("print('computing')\narea(radius)", context=ctx)
        for e in (first, second, third):
            self.assertIsNone(e.error, e.error)
        self.assertEqual(third.text, "12.57")
        self.assertEqual(third.logs.stdout, ["computing\n"])
        self.assertEqual(third.execution_count, 3)

    def test_an_exception_has_its_name_value_and_traceback(self) -> None:
        ctx = self.context()
        e = self.sb.run_code("def boom():\n    raise ValueError('bad input')\nboom()", context=ctx)
        self.assertIsNotNone(e.error)
        assert e.error is not None
        self.assertEqual((e.error.name, e.error.value), ("ValueError", "bad input"))
        self.assertIn("in boom", e.error.traceback)
        self.assertIn("raise ValueError('bad input')", e.error.traceback)
        self.assertEqual(e.results, [])

    def test_final_expression_as_text_and_html(self) -> None:
        ctx = self.context()
        plain = self.sb.run_code("{'k': [1, 2]}", context=ctx)
        self.assertEqual(plain.text, "{'k': [1, 2]}")
        self.assertEqual(plain.results[0].formats(), ["text"])
        rich = self.sb.run_code("class Card:\n    def _repr_html_(self):\n        return '<div>card</div>'\nCard()",
                                context=ctx)
        self.assertEqual(len(rich.results), 1)
        self.assertEqual(rich.results[0].html, "<div>card</div>")
        self.assertTrue(rich.results[0].is_main_result)
        self.assertTrue((rich.text or "").startswith("<__main__.Card object"), rich.text)

    def test_timeout_interrupts_the_cell_and_the_context_stays_usable(self) -> None:
        ctx = self.context()
        self.sb.run_code("kept = 'yes'", context=ctx)
        e = self.sb.run_code("import time\nwhile True:\n    time.sleep(0.1)", context=ctx, timeout=2)
        self.assertTrue(e.timed_out)
        assert e.error is not None
        self.assertEqual(e.error.name, "KeyboardInterrupt")
        self.assertFalse(e.restarted)
        self.assertEqual(self.sb.run_code("kept", context=ctx).text, "'yes'")

    def test_two_contexts_are_independent(self) -> None:
        a = self.context(envs={"ROLE": "a"})
        b = self.context(cwd="/tmp", envs={"ROLE": "b"})
        self.sb.run_code("x = 'only in a'", context=a)
        missing = self.sb.run_code("x", context=b)
        assert missing.error is not None
        self.assertEqual(missing.error.name, "NameError")
        probe = "import os\n(os.environ['ROLE'], os.getcwd())"
        self.assertEqual(self.sb.run_code(probe, context=a).text, "('a', '/workspace')")
        self.assertEqual(self.sb.run_code(probe, context=b).text, "('b', '/tmp')")
        ids = [c.id for c in self.sb.list_code_contexts()]
        self.assertIn(a.id, ids)
        self.assertIn(b.id, ids)

    def test_restart_clears_state(self) -> None:
        ctx = self.context()
        self.sb.run_code("state = 1", context=ctx)
        again = self.sb.restart_code_context(ctx)
        self.assertEqual(again.id, ctx.id)
        e = self.sb.run_code("state", context=ctx)
        assert e.error is not None
        self.assertEqual(e.error.name, "NameError")

    def test_run_after_remove_is_not_found(self) -> None:
        ctx = self.sb.create_code_context()
        self.sb.remove_code_context(ctx)
        with self.assertRaises(cs.NotFoundError) as cm:
            self.sb.run_code("1", context=ctx)
        self.assertEqual(cm.exception.status, 404)
        self.assertNotIn(ctx.id, [c.id for c in self.sb.list_code_contexts()])

    def test_streamed_output_arrives_through_the_callbacks(self) -> None:
        ctx = self.context()
        seen: List[str] = []
        e = self.sb.run_code("print('one', flush=True)\nimport time; time.sleep(0.2)\nprint('two')\n3",
                             context=ctx, on_stdout=seen.append)
        self.assertEqual("".join(seen), "one\ntwo\n")
        self.assertEqual(e.stdout, "one\ntwo\n")
        self.assertEqual(e.text, "3")

    def test_bash_context_keeps_shell_state(self) -> None:
        ctx = self.context(language="bash")
        self.assertEqual(ctx.language, "bash")
        self.sb.run_code("cd /tmp && export STAGE=build && greet() { echo \"hello $1\"; }", context=ctx)
        e = self.sb.run_code("greet \"$STAGE\"; pwd", context=ctx)
        self.assertEqual(e.stdout, "hello build\n/tmp\n")
        self.assertIsNone(e.error)
        failed = self.sb.run_code("ls /no/such/dir", context=ctx)
        assert failed.error is not None
        self.assertEqual(failed.error.name, "ExitStatus")
        self.assertIn("No such file", failed.stderr)

    def test_flat_run_code_is_unchanged(self) -> None:
        result = self.sb.run_code("x = 1\nprint(x + 1)")
        self.assertIsInstance(result, cs.ExecutionResult)
        self.assertEqual((result.stdout, result.exit_code), ("2\n", 0))


def _quiet_remove(sb: Sandbox, ctx: cs.Context) -> None:
    try:
        sb.remove_code_context(ctx)
    except cs.SandboxError:
        pass


# The clock drift sandboxd allows when it checks exp (api/auth.go, jwt.WithLeeway).
SERVER_LEEWAY = 30
# run_integration.sh starts sandboxd with ACCESS_TOKEN_TTL=3; anything up to this works here.
SHORT_TTL = 10


class ProcessesTest(unittest.TestCase):
    """sandbox.commands and sandbox.pty against real sandboxes."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.client = _client("procs")
        cls.sb = cls.client.acquire()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sb.close()
        cls.client.close()

    def until(self, read, want: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = read()
            if want in text:
                return text
            time.sleep(0.05)
        self.fail(f"{want!r} never appeared; got {read()!r}")

    def test_run_in_the_foreground_returns_a_result(self) -> None:
        result = self.sb.commands.run("echo fg; exit 3")
        self.assertEqual((result.stdout, result.exit_code), ("fg\n", 3))

    def test_background_web_server_answers_and_is_listed_then_killed(self) -> None:
        self.sb.write_file("/workspace/www/index.html", "served")
        lines: List[str] = []
        server = self.sb.commands.run("python3 -m http.server 8123 --bind 127.0.0.1", background=True,
                                      cwd="/workspace/www", tag="web", on_stderr=lines.append)
        self.assertGreater(server.pid, 0)
        fetch = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8123/', timeout=5).read().decode())"
        deadline = time.monotonic() + 20
        while True:
            got = self.sb.run_code(fetch)
            if got.exit_code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(got.stdout, "served\n")
        listed = {p.pid: p for p in self.sb.commands.list()}
        self.assertIn(server.pid, listed)
        self.assertEqual((listed[server.pid].tag, listed[server.pid].running), ("web", True))
        self.until(lambda: "".join(lines), "GET / ")
        self.assertTrue(server.kill())
        result = server.wait(timeout=20)
        self.assertEqual((result.exit_code, result.signal), (137, "SIGKILL"))
        self.assertFalse(self.sb.commands.kill(server.pid))  # already ended

    def test_send_stdin_to_cat_and_wait(self) -> None:
        cat = self.sb.commands.run(["cat"], background=True, stdin=True)
        cat.send_stdin("hello ")
        cat.send_stdin("cat", close=True)
        result = cat.wait(timeout=20)
        self.assertEqual((result.stdout, result.exit_code), ("hello cat", 0))

    def test_connect_replays_output_from_an_offset(self) -> None:
        proc = self.sb.commands.run("echo one; sleep 0.5; echo two; sleep 0.5; echo three", background=True)
        self.until(lambda: proc.stdout, "one\n")
        seen = proc.offset
        proc.disconnect()
        again = self.sb.commands.connect(proc.pid, offset=seen)
        result = again.wait(timeout=20)
        self.assertEqual((result.stdout, result.exit_code), ("two\nthree\n", 0))
        self.assertEqual(self.sb.commands.connect(proc.pid).wait(timeout=20).stdout, "one\ntwo\nthree\n")

    def test_signal_is_reported(self) -> None:
        proc = self.sb.commands.run(["sleep", "600"], background=True)
        self.assertTrue(proc.kill("SIGTERM"))
        result = proc.wait(timeout=20)
        self.assertEqual((result.exit_code, result.signal, result.error), (143, "SIGTERM", "killed by SIGTERM"))
        self.assertFalse(self.sb.commands.wait(proc.pid, timeout=1).running)

    def test_pty_python_answers_typed_input_and_resize_changes_stty_size(self) -> None:
        chunks: List[str] = []
        term = self.sb.pty.create(rows=24, cols=80, cmd=["python3", "-q", "-i"], on_data=chunks.append)
        self.until(lambda: "".join(chunks), ">>> ")
        term.send_input("print(6 * 7)\n")
        self.until(lambda: term.output, "42\r\n")
        term.send_input("exit()\n")
        self.assertEqual(term.wait(timeout=20).exit_code, 0)

        shell = self.sb.pty.create(rows=24, cols=80, cmd=["sh"], envs={"PS1": "sh$ "})
        self.until(lambda: shell.output, "sh$ ")
        shell.resize(rows=33, cols=111)
        shell.send_input("stty size\n")
        self.until(lambda: shell.output, "33 111")
        self.assertTrue(self.sb.pty.kill(shell.pid))
        self.assertEqual(shell.wait(timeout=20).exit_code, 137)

    def test_by_pid_calls_reach_a_process_another_handle_started(self) -> None:
        term = self.sb.pty.create(rows=10, cols=40, cmd=["sh"], envs={"PS1": "sh$ "}, tag="by-pid")
        term.disconnect()
        info = self.sb.commands.get(term.pid)
        self.assertEqual((info.pty, info.tag, info.running, info.survives_pause), (True, "by-pid", True, True))
        again = self.sb.pty.connect(term.pid)
        self.until(lambda: again.output, "sh$ ")
        self.sb.pty.resize(term.pid, rows=12, cols=34)
        self.sb.pty.send_stdin(term.pid, "stty size; exit\n")
        self.assertEqual(again.wait(timeout=20).exit_code, 0)
        self.assertIn("12 34", again.output)

        cat = self.sb.commands.run("cat; echo done", background=True, stdin=True)
        self.sb.commands.send_stdin(cat.pid, "x" * 100000)  # over one request's bound: sent in chunks
        cat.close_stdin()
        result = cat.wait(timeout=20)
        self.assertEqual((len(result.stdout), result.stdout[-5:]), (100005, "done\n"))


class TokenExpiryTest(unittest.TestCase):
    """Short-lived access tokens (ACCESS_TOKEN_TTL=3 from run_integration.sh): a client keeps
    working past its access token's expiry, by refreshing ahead of it or after a 401."""

    def setUp(self) -> None:
        self.client = _client("ttl")
        self.addCleanup(self.client.close)
        self.client.stats()  # gets the first token
        claims = jwt_claims(self.client._tokens._access or "")
        ttl = claims.get("exp", 0) - claims.get("iat", 0)
        if not 0 < ttl <= SHORT_TTL:
            msg = f"the server's access tokens live {ttl}s; start it with ACCESS_TOKEN_TTL=3 (run_integration.sh does)"
            if os.environ.get("CI") == "true":
                self.fail(msg)
            self.skipTest(msg)
        self.exp = claims["exp"]

    def wait_until(self, t: float) -> None:
        # Bounded: t is at most SHORT_TTL + SERVER_LEEWAY + 2 seconds after the token was issued.
        time.sleep(max(0.0, t - time.time()))

    def test_run_code_works_after_the_access_token_expired(self) -> None:
        with self.client.acquire() as sb:
            first, refresh = self.client._tokens._access, self.client._tokens._refresh
            self.wait_until(self.exp + 1)
            self.assertEqual(sb.run_code("print('still here')").stdout, "still here\n")
            self.assertNotEqual(self.client._tokens._access, first)
            self.assertNotEqual(self.client._tokens._refresh, refresh)  # rotated

    def test_a_token_the_server_calls_expired_is_refreshed_after_the_401(self) -> None:
        with self.client.acquire() as sb:
            first = self.client._tokens._access
            # A client clock stuck at the start (a skewed clock) never refreshes ahead of time,
            # so the server has to refuse the token first: past exp and its drift leeway.
            frozen = time.time()
            self.client._tokens.clock = lambda: frozen
            self.wait_until(self.exp + SERVER_LEEWAY + 2)
            with self.assertLogs("cloud_sandbox", "INFO") as logs:
                self.assertEqual(sb.run_code("print('after 401')").stdout, "after 401\n")
            self.assertTrue(any("after 401 (token expired)" in line for line in logs.output), logs.output)
            self.assertNotEqual(self.client._tokens._access, first)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class _PeakRSS:
    """Samples this process's VmRSS every 5 ms in a thread and keeps the largest value."""

    def __init__(self) -> None:
        self.before = _rss_kib()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_kib())

    def growth_mib(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return (self.peak - self.before) / 1024


def _generated(seed: int, size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Deterministic pseudo-random bytes, one chunk at a time."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


class FilesTest(unittest.TestCase):
    """sandbox.files against a live sandboxd (run_integration.sh gives sandboxes a 1100 MiB disk)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.client = _client("files")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()

    def sandbox(self) -> Sandbox:
        sb = self.client.acquire()
        self.addCleanup(sb.close)
        return sb

    def test_read_and_write_in_every_format(self) -> None:
        sb = self.sandbox()
        info = sb.files.write("/workspace/a/t.txt", "héllo ✓\n")
        self.assertEqual((info.path, info.size), ("/workspace/a/t.txt", len("héllo ✓\n".encode())))
        self.assertEqual(sb.files.read("/workspace/a/t.txt"), "héllo ✓\n")
        blob = bytes(range(256)) * 1000
        sb.files.write("/workspace/b.bin", io.BytesIO(blob))  # a seekable file object
        self.assertEqual(sb.files.read("/workspace/b.bin", format="bytes"), blob)
        with sb.files.read("/workspace/b.bin", format="stream") as stream:
            self.assertEqual(stream.size, len(blob))
            chunks = list(stream)
        self.assertEqual(b"".join(chunks), blob)
        with sb.files.read("/workspace/b.bin", format="stream") as stream:
            self.assertEqual(stream.read(10), blob[:10])
        # The guide's flat methods see the same files.
        self.assertEqual(sb.read_file("/workspace/a/t.txt"), "héllo ✓\n")
        self.assertIn("b.bin", [f.name for f in sb.list_files("/workspace")])
        with self.assertRaises(cs.NotFoundError):
            sb.files.read("/workspace/none")

    def test_write_from_a_generator_and_a_pipe(self) -> None:
        sb = self.sandbox()
        want = hashlib.sha256()
        def gen() -> Iterator[bytes]:
            for chunk in _generated(1, 5 << 20, 100_000):
                want.update(chunk)
                yield chunk
        info = sb.files.write("/workspace/gen.bin", gen())
        self.assertEqual(info.size, 5 << 20)
        out = sb.run_command("sha256sum /workspace/gen.bin").stdout.split()[0]
        self.assertEqual(out, want.hexdigest())
        r, w = os.pipe()
        with os.fdopen(w, "wb") as wf:
            wf.write(b"through a pipe\n")
        with os.fdopen(r, "rb") as rf:
            sb.files.write("/workspace/pipe.txt", rf)
        self.assertEqual(sb.files.read("/workspace/pipe.txt"), "through a pipe\n")

    def test_exists_get_info_list_rename_remove_make_dir(self) -> None:
        sb = self.sandbox()
        sb.run_command("set -e; mkdir -p /workspace/t/d1/d2; printf hello > /workspace/t/a.txt; chmod 640 /workspace/t/a.txt; "
                       "printf x > /workspace/t/d1/b; printf y > /workspace/t/d1/d2/c; ln -s /etc /workspace/t/etc")
        self.assertTrue(sb.files.exists("/workspace/t/a.txt"))
        self.assertFalse(sb.files.exists("/workspace/t/nope"))
        info = sb.files.get_info("/workspace/t/a.txt")
        self.assertEqual((info.name, info.type, info.size, info.mode), ("a.txt", "file", 5, "0640"))
        self.assertIsNotNone(info.modified_time)
        link = sb.files.get_info("/workspace/t/etc")
        self.assertEqual((link.type, link.symlink_target), ("symlink", "/etc"))
        with self.assertRaises(cs.NotFoundError):
            sb.files.get_info("/workspace/t/nope")

        def paths(entries: List[cs.EntryInfo]) -> List[str]:
            return [e.path.replace("/workspace/t/", "") for e in entries]
        self.assertEqual(paths(sb.files.list("/workspace/t")), ["a.txt", "d1", "etc"])
        self.assertEqual(paths(sb.files.list("/workspace/t", depth=3)), ["a.txt", "d1", "etc", "d1/b", "d1/d2", "d1/d2/c"])
        cut = sb.files.list("/workspace/t", depth=3, limit=4)
        self.assertEqual((len(cut), cut.truncated), (4, True))
        self.assertFalse(sb.files.list("/workspace/t", depth=3).truncated)

        moved = sb.files.rename("/workspace/t/a.txt", "/workspace/t/d1/moved.txt")
        self.assertEqual((moved.path, moved.size), ("/workspace/t/d1/moved.txt", 5))
        self.assertFalse(sb.files.exists("/workspace/t/a.txt"))
        with self.assertRaises(cs.PermissionDeniedError):  # out of the writable roots
            sb.files.rename("/workspace/t/d1/moved.txt", "/etc/moved.txt")
        with self.assertRaises(cs.PermissionDeniedError):  # out through a symlink
            sb.files.rename("/workspace/t/etc/hostname", "/workspace/t/h")
        self.assertEqual(sb.files.read("/workspace/t/d1/moved.txt"), "hello")

        self.assertTrue(sb.files.make_dir("/workspace/t/new/deep"))
        self.assertFalse(sb.files.make_dir("/workspace/t/new/deep"))
        self.assertTrue(sb.files.get_info("/workspace/t/new/deep").is_dir)
        sb.files.remove("/workspace/t/d1")
        self.assertFalse(sb.files.exists("/workspace/t/d1"))

    def test_watch_dir_reports_changes_in_order_and_stops(self) -> None:
        sb = self.sandbox()
        sb.files.make_dir("/workspace/w")
        events: "queue.Queue[cs.FilesystemEvent]" = queue.Queue()
        exits: "queue.Queue[Optional[BaseException]]" = queue.Queue()
        handle = sb.files.watch_dir("/workspace/w", events.put, recursive=True, on_exit=exits.put)
        try:
            sb.run_command("cd /workspace/w && : > a && echo hi >> a && mv a b && rm b")
            got = []
            for _ in range(4):
                ev = events.get(timeout=15)
                got.append((ev.type, ev.path, ev.old_path))
            self.assertEqual(got, [("create", "/workspace/w/a", None), ("write", "/workspace/w/a", None),
                                   ("rename", "/workspace/w/b", "/workspace/w/a"), ("remove", "/workspace/w/b", None)])
        finally:
            handle.stop()
        self.assertIsNone(exits.get(timeout=10))
        self.assertFalse(handle.running)
        with self.assertRaises(cs.NotFoundError):
            sb.files.watch_dir("/workspace/none", events.put)

    def test_one_gib_streamed_both_ways_in_bounded_memory(self) -> None:
        sb = self.sandbox()
        size = 1 << 30
        sent = hashlib.sha256()
        def gen() -> Iterator[bytes]:
            for chunk in _generated(7, size):
                sent.update(chunk)
                yield chunk
        rss = _PeakRSS()
        start = time.monotonic()
        self.assertEqual(sb.files.write("/workspace/big.bin", gen()).size, size)
        up = time.monotonic() - start
        self.assertEqual(sb.run_command("sha256sum /workspace/big.bin", timeout=120).stdout.split()[0], sent.hexdigest())
        got = hashlib.sha256()
        n = 0
        start = time.monotonic()
        with sb.files.read("/workspace/big.bin", format="stream") as stream:
            for chunk in stream:
                got.update(chunk)
                n += len(chunk)
        down = time.monotonic() - start
        growth = rss.growth_mib()
        print(f"\nSDK 1 GiB: write {up:.1f}s ({1024 / up:.0f} MiB/s), read {down:.1f}s ({1024 / down:.0f} MiB/s), "
              f"VmRSS {rss.before // 1024} MiB before, peak +{growth:.1f} MiB", file=sys.stderr)
        self.assertEqual((n, got.hexdigest()), (size, sent.hexdigest()))
        self.assertLess(growth, 64, f"the SDK's resident memory grew by {growth:.1f} MiB moving 1 GiB")

    def test_upload_larger_than_the_disk_is_a_clear_413(self) -> None:
        sb = self.sandbox()
        sb.files.write("/workspace/keep", "precious")
        class Zeros(io.RawIOBase):
            """A seekable 4 GiB of zeros that costs nothing to hold."""
            size, pos = 4 << 30, 0
            def readable(self) -> bool: return True
            def seekable(self) -> bool: return True
            def seek(self, off: int, whence: int = 0) -> int:
                self.pos = off if whence == 0 else self.size + off if whence == 2 else self.pos + off
                return self.pos
            def tell(self) -> int: return self.pos
            def readinto(self, b: Any) -> int:
                n = min(len(b), self.size - self.pos)
                b[:n] = bytes(n)
                self.pos += n
                return n
        with self.assertRaises(cs.SandboxError) as cm:
            sb.files.write("/workspace/keep", Zeros())
        self.assertEqual(cm.exception.status, 413, cm.exception)
        self.assertIn("disk", str(cm.exception))
        self.assertEqual(sb.files.read("/workspace/keep"), "precious")
        self.assertEqual(sb.run_code("print(1)").stdout, "1\n")


def _quiet_delete(c: Client, session_id: str) -> None:
    try:
        c.sessions.delete(session_id)
    except cs.SandboxError:
        pass


if __name__ == "__main__":
    unittest.main()
