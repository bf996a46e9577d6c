"""Password hashing for annotators: scrypt with a per-user salt, checked in constant time.

Stored form: `scrypt$n$r$p$<salt hex>$<hash hex>`, so the cost can be raised later without
breaking old hashes. scrypt needs 128 * n * r * p bytes; OpenSSL refuses more than 32 MiB unless
told otherwise, so every call passes `maxmem` for the hash's own parameters (a raised cost then
works instead of failing every login), and an error of scrypt itself is raised, never taken for a
wrong password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass

SCRYPT_N = 2**14  # ~16 MiB of memory per check: slow for an attacker, a few ms for a login
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSWORD_LENGTH = 8  # NIST SP 800-63B: at least 8 for a password a person chose
# What a stored hash may ask for: up to 1 GiB of memory per check (n = 2**20 with r = 8), no less
# than n = 2**10; a row outside these bounds was not written by this module.
_N_RANGE = (2**10, 2**20)
_R_RANGE = (1, 32)
_P_RANGE = (1, 16)
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @property
    def maxmem(self) -> int:
        """Bytes scrypt needs for these parameters, with room for OpenSSL's own bookkeeping."""
        return 128 * self.n * self.r * self.p + 2**20


def parse_hash(stored: str) -> ScryptHash:
    """The parts of a stored hash, or ValueError saying what is wrong with it."""
    parts = stored.split("$") if isinstance(stored, str) else []
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not an align password hash (expected scrypt$n$r$p$salt$hash)")
    _, n, r, p, salt, digest = parts
    if not (n.isascii() and n.isdigit() and r.isascii() and r.isdigit() and p.isascii() and p.isdigit()):
        raise ValueError("scrypt parameters n, r, p must be whole numbers")
    n_, r_, p_ = int(n), int(r), int(p)
    if n_ & (n_ - 1) or not _N_RANGE[0] <= n_ <= _N_RANGE[1]:
        raise ValueError(f"scrypt n must be a power of two in {_N_RANGE[0]}..{_N_RANGE[1]}, not {n_}")
    if not (_R_RANGE[0] <= r_ <= _R_RANGE[1] and _P_RANGE[0] <= p_ <= _P_RANGE[1]):
        raise ValueError(f"scrypt r={r_}, p={p_} out of range (r 1..32, p 1..16)")
    for name, value, least in (("salt", salt, 16), ("hash", digest, 16)):
        if not _HEX.fullmatch(value) or len(value) % 2 or len(value) // 2 < least or len(value) > 256:
            raise ValueError(f"scrypt {name} must be lowercase hex of {least} to 128 bytes")
    return ScryptHash(n_, r_, p_, bytes.fromhex(salt), bytes.fromhex(digest))


def _scrypt(password: str, h: ScryptHash, dklen: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=h.salt, n=h.n, r=h.r, p=h.p, maxmem=h.maxmem, dklen=dklen)


def hash_password(password: str) -> str:
    params = ScryptHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, os.urandom(16), b"")
    digest = _scrypt(password, params, 32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${params.salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches; a malformed stored hash never matches. scrypt's own
    failures (memory, a broken OpenSSL) are raised: they would otherwise lock everyone out
    silently."""
    try:
        expected = parse_hash(stored)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, expected, len(expected.digest)), expected.digest)
