"""Password hashing for annotators: scrypt with a per-user salt, checked in constant time.

Stored form: `scrypt$n$r$p$<salt hex>$<hash hex>`, so the cost can be raised later without
breaking old hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import os

SCRYPT_N = 2**14  # ~16 MiB of memory per check: slow for an attacker, a few ms for a login
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSWORD_LENGTH = 8  # NIST SP 800-63B: at least 8 for a password a person chose


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches; a malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected) // 2
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), expected)
