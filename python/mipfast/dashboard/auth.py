"""Who may use the dashboard: two accounts (``admin`` changes settings, ``user`` reads),
sessions held in memory behind a random 128-bit cookie, a CSRF token per session, and
failed logins slowed down per client address."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

ROLES = ("admin", "user")
COOKIE = "mipfast_session"


def generate_password() -> str:
    return secrets.token_urlsafe(12)


class Accounts:
    """The two accounts; passwords kept only as salted PBKDF2 hashes."""

    ITERATIONS = 100_000

    def __init__(self, passwords: dict[str, str]) -> None:
        unknown = set(passwords) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown accounts {sorted(unknown)}: there are {', '.join(ROLES)}")
        self._salt = secrets.token_bytes(16)
        self._hashes = {name: self._hash(pw) for name, pw in passwords.items()}

    def _hash(self, password: str) -> bytes:
        return hashlib.pbkdf2_hmac("sha256", password.encode(), self._salt, self.ITERATIONS)

    def check(self, name: str, password: str) -> bool:
        """Constant-time in the password; an unknown name costs the same as a wrong password."""
        digest = self._hash(password)
        expected = self._hashes.get(name, b"\0" * len(digest))
        return hmac.compare_digest(digest, expected) and name in self._hashes


@dataclass
class Session:
    token: str
    user: str
    csrf: str
    expires: float

    @property
    def role(self) -> str:
        return self.user  # the account names are the roles

    @property
    def is_admin(self) -> bool:
        return self.user == "admin"


class Sessions:
    def __init__(self, lifetime: float = 8 * 3600, limit: int = 1024) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._by_token: dict[str, Session] = {}

    def open(self, user: str) -> Session:
        self._expire()
        while len(self._by_token) >= self.limit:  # the oldest goes
            self._by_token.pop(next(iter(self._by_token)))
        s = Session(
            secrets.token_urlsafe(16), user, secrets.token_urlsafe(16), time.monotonic() + self.lifetime
        )
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        s = self._by_token.get(token)
        if s is None or s.expires <= time.monotonic():
            self._by_token.pop(token, None)
            return None
        return s

    def close(self, token: str) -> None:
        self._by_token.pop(token, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[token]

    def cookie(self, s: Session) -> str:
        return f"{COOKIE}={s.token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(self.lifetime)}"

    @staticmethod
    def cleared_cookie() -> str:
        return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"


class LoginThrottle:
    """Each failed login from an address doubles the wait before the next answer to it
    (0.5 s, 1 s, 2 s … up to ``ceiling``); a success or ``forget_after`` quiet seconds reset it."""

    def __init__(self, first: float = 0.5, ceiling: float = 8.0, forget_after: float = 900.0) -> None:
        self.first, self.ceiling, self.forget_after = first, ceiling, forget_after
        self._failures: dict[str, tuple[int, float]] = {}

    def delay(self, address: str) -> float:
        count, last = self._failures.get(address, (0, 0.0))
        if not count or time.monotonic() - last > self.forget_after:
            return 0.0
        return min(self.first * 2.0 ** (count - 1), self.ceiling)

    def failed(self, address: str) -> None:
        count, last = self._failures.get(address, (0, 0.0))
        if time.monotonic() - last > self.forget_after:
            count = 0
        self._failures[address] = (count + 1, time.monotonic())
        if len(self._failures) > 4096:
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
