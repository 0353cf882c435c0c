"""Token handling: issue once, renew before expiry, renew once on 401, fall back to a new token;
a token pair refreshes until its refresh token is refused."""

from __future__ import annotations

import threading
import unittest

from support import FakeServerTest

from cloud_sandbox import AuthenticationError, Client, RetryPolicy
from cloud_sandbox._auth import jwt_claims

STATS = "/api/v1/sandbox/stats"


class TokenTest(FakeServerTest):
    def test_first_request_gets_a_token_and_sends_it(self) -> None:
        c = self.client()
        c.stats()
        self.assertEqual(self.server.route_log(), ["POST /api/v1/auth/token 200", f"GET {STATS} 200"])
        self.assertEqual(self.server.calls("POST", "/api/v1/auth/token")[0].json(), {"user_id": "alice"})
        auth = self.server.calls("GET", STATS)[0].headers["Authorization"]
        self.assertTrue(auth.startswith("Bearer "))
        self.assertEqual(jwt_claims(auth[7:])["sub"], "alice")

    def test_401_then_refresh_then_success(self) -> None:
        c = self.client()
        c.stats()
        old = self.server.calls("GET", STATS)[0].headers["Authorization"]
        self.server.revoke_access_tokens()
        stats = c.stats()
        self.assertEqual(stats.max_size, 10)
        self.assertEqual(self.server.route_log()[2:], [
            f"GET {STATS} 401", "POST /api/v1/auth/refresh 200", f"GET {STATS} 200"])
        self.assertNotEqual(self.server.calls("GET", STATS)[2].headers["Authorization"], old)

    def test_expiring_token_is_refreshed_before_the_request(self) -> None:
        c = self.client()
        c.stats()
        # Move the client's clock to one second before expiry: it must refresh first, never see a 401.
        exp = jwt_claims(self.server.calls("GET", STATS)[0].headers["Authorization"][7:])["exp"]
        c._tokens.clock = lambda: exp - 1
        c.stats()
        self.assertEqual(self.server.route_log()[2:], ["POST /api/v1/auth/refresh 200", f"GET {STATS} 200"])

    def test_refused_refresh_falls_back_to_a_new_token(self) -> None:
        c = self.client()
        c.stats()
        self.server.revoke_access_tokens()
        self.server.revoke_refresh_tokens()
        c.stats()
        self.assertEqual(self.server.route_log()[2:], [
            f"GET {STATS} 401", "POST /api/v1/auth/refresh 401", "POST /api/v1/auth/token 200",
            f"GET {STATS} 200"])

    def test_fixed_token_that_is_refused_raises_authentication_error(self) -> None:
        c = self.client(user_id=None, token="not-a-valid-token")
        with self.assertRaises(AuthenticationError) as cm:
            c.stats()
        self.assertEqual(cm.exception.status, 401)
        self.assertEqual(cm.exception.message, "missing or invalid token")
        self.assertEqual(self.server.route_log(), [f"GET {STATS} 401"])

    def test_api_key_is_sent_in_the_token_request(self) -> None:
        c = self.client(user_id=None, api_key="k-123")
        c.stats()
        self.assertEqual(self.server.calls("POST", "/api/v1/auth/token")[0].json(), {"api_key": "k-123"})

    def test_threads_share_one_token(self) -> None:
        c = self.client()
        errors = []

        def work() -> None:
            try:
                c.stats()
            except Exception as e:  # collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(errors, [])
        self.assertEqual(len(self.server.calls("POST", "/api/v1/auth/token")), 1)
        self.assertEqual(len(self.server.calls("GET", STATS)), 8)


class RefreshTest(FakeServerTest):
    """Short-lived access tokens: the refresh token keeps a client going, and says so when it cannot."""

    def pair(self) -> dict:
        with self.server.lock:
            return self.server.issue("alice")

    def test_refresh_starts_30_seconds_before_expiry(self) -> None:
        c = self.client()
        c.stats()
        exp = jwt_claims(self.server.calls("GET", STATS)[0].headers["Authorization"][7:])["exp"]
        c._tokens.clock = lambda: exp - 31
        c.stats()
        self.assertEqual(self.server.calls("POST", "/api/v1/auth/refresh"), [])
        c._tokens.clock = lambda: exp - 29
        c.stats()
        self.assertEqual(self.server.route_log()[3:], ["POST /api/v1/auth/refresh 200", f"GET {STATS} 200"])

    def test_expired_401_refreshes_once_and_stores_the_rotated_pair(self) -> None:
        p = self.pair()
        c = self.client(user_id=None, token=p["access_token"], refresh_token=p["refresh_token"])
        c.stats()
        self.server.expire_access_tokens()
        c.stats()
        self.assertEqual(self.server.route_log(), [
            f"GET {STATS} 200", f"GET {STATS} 401", "POST /api/v1/auth/refresh 200", f"GET {STATS} 200"])
        self.assertEqual(self.server.calls("POST", "/api/v1/auth/refresh")[0].json(),
                         {"refresh_token": p["refresh_token"]})
        # Rotation: the next refresh sends the new refresh token (the fake refuses the spent one).
        self.server.expire_access_tokens()
        c.stats()
        second = self.server.calls("POST", "/api/v1/auth/refresh")[1]
        self.assertEqual(second.status, 200)
        self.assertNotEqual(second.json()["refresh_token"], p["refresh_token"])
        self.assertEqual(self.server.calls("POST", "/api/v1/auth/token"), [])

    def test_pair_is_refreshed_before_expiry(self) -> None:
        p = self.pair()
        c = self.client(user_id=None, token=p["access_token"], refresh_token=p["refresh_token"])
        exp = jwt_claims(p["access_token"])["exp"]
        c._tokens.clock = lambda: exp - 1
        c.stats()
        self.assertEqual(self.server.route_log(), ["POST /api/v1/auth/refresh 200", f"GET {STATS} 200"])

    def test_refused_refresh_raises_a_clear_authentication_error(self) -> None:
        p = self.pair()
        c = self.client(user_id=None, token=p["access_token"], refresh_token=p["refresh_token"])
        self.server.expire_access_tokens()
        self.server.revoke_refresh_tokens()
        with self.assertRaises(AuthenticationError) as cm:
            c.stats()
        e = cm.exception
        self.assertEqual((e.status, e.method, e.path), (401, "POST", "/api/v1/auth/refresh"))
        self.assertIn("refused the refresh token (invalid refresh token)", e.message)
        self.assertIn("POST /api/v1/auth/token", e.message)
        self.assertEqual(self.server.route_log(), [f"GET {STATS} 401", "POST /api/v1/auth/refresh 401"])

    def test_401_that_is_not_expiry_is_final_without_credentials(self) -> None:
        p = self.pair()
        c = self.client(user_id=None, token=p["access_token"], refresh_token=p["refresh_token"])
        self.server.revoke_access_tokens()
        with self.assertRaises(AuthenticationError) as cm:
            c.stats()
        self.assertEqual(cm.exception.message, "missing or invalid token")
        self.assertEqual(self.server.route_log(), [f"GET {STATS} 401"])

    def test_refresh_token_alone_buys_the_first_pair(self) -> None:
        c = self.client(user_id=None, refresh_token=self.pair()["refresh_token"])
        c.stats()
        self.assertEqual(self.server.route_log(), ["POST /api/v1/auth/refresh 200", f"GET {STATS} 200"])


class ShortTokenTest(FakeServerTest):
    token_lifetime = 4

    def test_short_token_is_renewed_at_half_its_life_not_before_every_request(self) -> None:
        c = self.client()
        c.stats()
        iat = jwt_claims(self.server.calls("GET", STATS)[0].headers["Authorization"][7:])["iat"]
        c._tokens.clock = lambda: iat + 1.5
        c.stats()
        self.assertEqual(self.server.calls("POST", "/api/v1/auth/refresh"), [])
        c._tokens.clock = lambda: iat + 2.5
        c.stats()
        self.assertEqual(len(self.server.calls("POST", "/api/v1/auth/refresh")), 1)


class CredentialsTest(unittest.TestCase):
    def test_missing_credentials_is_a_clear_error(self) -> None:
        import os
        from unittest import mock

        with mock.patch.dict(os.environ, {}, clear=True):
            with self.assertRaisesRegex(ValueError, "CLOUD_SANDBOX_USER"):
                Client("http://127.0.0.1:1")

    def test_environment_supplies_url_user_and_timeout(self) -> None:
        import os
        from unittest import mock

        env = {"CLOUD_SANDBOX_URL": "http://example.invalid:9999/prefix/", "CLOUD_SANDBOX_USER": "bob",
               "CLOUD_SANDBOX_TIMEOUT": "7.5"}
        with mock.patch.dict(os.environ, env, clear=True):
            c = Client(retry=RetryPolicy(sleep=lambda s: None))
        self.assertEqual((c.base_url, c.user_id, c.timeout), ("http://example.invalid:9999/prefix", "bob", 7.5))
        self.assertEqual(c._transport.url("/health"), "/prefix/health")

    def test_jwt_claims_reads_unverified_payload(self) -> None:
        from fake_server import make_jwt

        cases = [
            ("valid", make_jwt({"exp": 123, "sub": "a"}), {"exp": 123, "sub": "a"}),
            ("two parts", "a.b", {}),
            ("garbage payload", "a.!!!.c", {}),
            ("non-object payload", "a.WzFd.c", {}),  # base64url of [1]
        ]
        for name, token, want in cases:
            with self.subTest(name):
                self.assertEqual(jwt_claims(token), want)


if __name__ == "__main__":
    unittest.main()
