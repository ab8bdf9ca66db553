"""Stable pseudo-random draws: a number in [0, 1) fixed by what it is drawn for, so a sample chosen twice is the same.

Audits (annotation/selection/rounds.py) and overlap reviews (annotation/items/services.py) pick their share of items
with it: an item is in the sample when its draw falls under the rate.
"""
import hashlib


def stable_draw(*parts) -> float:
    """A uniform number in [0, 1) determined by ``parts`` (joined with ":" and hashed)."""
    salt = ":".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(salt, digest_size=8).digest(), "big") / 2**64
