"""Read your writes: the client sends back the highest X-Cloud-Sandbox-Index it has seen."""

from __future__ import annotations

import unittest

from fake_server import INDEX_HEADER, Fault
from support import FakeServerTest

STATS = "/api/v1/sandbox/stats"


class IndexEchoTest(FakeServerTest):
    def test_every_request_carries_the_highest_index_seen(self) -> None:
        c = self.client()
        sb = c.acquire()  # token (index 0), acquire (a write: index 1)
        c.stats()
        sb.run_command("echo hi")  # a write: index 2
        c.stats()
        sent = {(r.method, r.path): r.headers.get(INDEX_HEADER) for r in self.server.requests}
        token = self.server.calls("POST", "/api/v1/auth/token")[0]
        self.assertIsNone(token.headers.get(INDEX_HEADER), "nothing seen yet, nothing sent")
        stats = self.server.calls("GET", STATS)
        self.assertEqual([r.headers.get(INDEX_HEADER) for r in stats], ["1", "2"])
        self.assertEqual(sent[("POST", "/api/v1/execute")], "1")
        self.assertEqual(c._transport.last_index, 2)

    def test_index_from_an_error_answer_counts_and_never_goes_down(self) -> None:
        c = self.client()
        c.stats()
        # A 503 (say, another node not yet at some index) that reports a higher
        # index, then answers that report lower ones: the client keeps the highest.
        self.server.fail("GET", STATS, Fault(503, headers={INDEX_HEADER: "41", "Retry-After": "0"}))
        c.stats()
        c.stats()
        stats = self.server.calls("GET", STATS)
        self.assertEqual([r.status for r in stats], [200, 503, 200, 200])
        self.assertEqual([r.headers.get(INDEX_HEADER) for r in stats[2:]], ["41", "41"])
        self.assertEqual(c._transport.last_index, 41)

    def test_index_is_per_client(self) -> None:
        a, b = self.client(), self.client()
        a.acquire()
        b.stats()
        first = self.server.calls("GET", STATS)[0]
        # b got its token before a's acquire: it had seen index 0 and sends none,
        # though a had seen 1; b learns 1 from its own answer.
        self.assertEqual(a._transport.last_index, 1)
        self.assertIsNone(first.headers.get(INDEX_HEADER))
        self.assertEqual(b._transport.last_index, 1)


if __name__ == "__main__":
    unittest.main()
