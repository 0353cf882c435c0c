"""Integration tests against a live sandboxd with real containers.

Set CLOUD_SANDBOX_URL (tests/run_integration.sh starts a server and does). Without
it these tests skip, except under CI=true, where a missing server is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from typing import List

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


def _quiet_delete(c: Client, session_id: str) -> None:
    try:
        c.sessions.delete(session_id)
    except cs.SandboxError:
        pass


if __name__ == "__main__":
    unittest.main()
