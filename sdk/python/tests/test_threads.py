"""One client, many threads: every thread gets its own command's result."""

from __future__ import annotations

import threading
import unittest
from typing import Dict, List

from support import FakeServerTest


class ThreadSafetyTest(FakeServerTest):
    def test_threads_running_commands_through_one_sandbox(self) -> None:
        sb = self.client().acquire()
        results: Dict[str, str] = {}
        failures: List[BaseException] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            try:
                for i in range(10):
                    word = f"t{n}-{i}"
                    out = sb.run_command(["echo", word]).stdout
                    with lock:
                        results[word] = out
            except BaseException as e:  # collected and asserted below
                failures.append(e)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(failures, [])
        self.assertEqual(len(results), 80)
        for word, out in results.items():
            self.assertEqual(out, word + "\n")
        self.assertEqual(len(self.server.calls("POST", "/api/v1/auth/token")), 1)


if __name__ == "__main__":
    unittest.main()
