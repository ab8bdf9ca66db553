"""Filters a candidate sample passes before it is stored as ``proposed``; a failing one is stored ``filtered``.

In order: empty / too short / too long, PII (e-mail, IBAN with its mod-97 checksum, payment card with a Luhn check,
phone numbers as the ``phonenumbers`` library reads them in ``settings.PII_PHONE_REGION``), leakage (a long verbatim
run shared with an exemplar shown in the prompt), exact duplicate and near duplicate, each within the batch and against
the project. Each threshold comes from the job's config (``FilterSettings``).

Near duplicates use character 5-gram shingles: MinHash signatures (64 permutations) split into 16 bands of 4 rows
(locality-sensitive hashing) find candidates, and the exact Jaccard similarity of the shingle sets decides. The bands
of stored items live in ``NearDuplicateKey`` so a lookup against the project costs one indexed query and a handful of
comparisons, however big the project is. A pair at Jaccard J becomes a candidate with probability 1 - (1 - J^4)^16:
0.99 at 0.7, 0.89 at 0.6, 0.64 at 0.5, so thresholds below 0.6 are allowed but miss some pairs. The signature's
estimate of J has standard deviation sqrt(J(1 - J) / 64), 0.0625 at 0.5. Measured with ``text_pairs`` of
tests/generation/test_filters.py (a random text and an edited copy; 2,000 pairs with exact J in [x, x + 0.02] per
level, seed 7): candidate recall 0.996 at [0.70, 0.72], 0.890 at [0.60, 0.62], 0.693 at [0.50, 0.52]; estimate s.d.
0.057 at [0.70, 0.72] and 0.062 at [0.50, 0.52], bias under 0.002.
"""
from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import phonenumbers
from django.conf import settings
from phonenumbers import Leniency

from synthstudio.lib.text import content_hash, normalise_text

SHINGLE = 5
PERMUTATIONS = 64
BANDS = 16
ROWS = PERMUTATIONS // BANDS
_PRIME = (1 << 61) - 1  # a Mersenne prime: reducing modulo it is a mask, a shift and an add
_perm_rng = np.random.default_rng(20240611)  # fixed: stored band keys must mean the same in every process
# The permutations x -> (a*x + b) mod p are only independent of each other when a and b range over the whole field;
# drawn below 2^32 they were correlated (estimate s.d. 0.2 instead of 0.06). generation/migrations/0003 recomputed the
# stored keys when this changed, and any change here needs such a migration too.
_A = _perm_rng.integers(1, _PRIME, size=PERMUTATIONS, dtype=np.uint64)
_B = _perm_rng.integers(0, _PRIME, size=PERMUTATIONS, dtype=np.uint64)
_A_HIGH, _A_LOW = _A >> np.uint64(32), _A & np.uint64(0xFFFFFFFF)


@dataclass(frozen=True)
class FilterSettings:
    min_chars: int = 10
    max_chars: int = 2000
    near_duplicate: float = 0.8  # Jaccard of character 5-gram shingles; 0 turns the check off
    leakage_words: int = 8  # a run of this many words shared with an exemplar is leakage; 0 turns it off
    pii: bool = True

    @classmethod
    def from_config(cls, config: dict | None) -> FilterSettings:
        config = config or {}
        defaults = cls()
        return cls(
            min_chars=int(config.get("min_chars", defaults.min_chars)),
            max_chars=int(config.get("max_chars", defaults.max_chars)),
            near_duplicate=float(config.get("near_duplicate", defaults.near_duplicate)),
            leakage_words=int(config.get("leakage_words", defaults.leakage_words)),
            pii=bool(config.get("pii", defaults.pii)),
        )


# ---------------------------------------------------------------------------------------------------------------------
# Signatures


def shingles(text: str) -> frozenset[str]:
    norm = normalise_text(text)
    if len(norm) <= SHINGLE:
        return frozenset({norm})
    return frozenset(norm[i:i + SHINGLE] for i in range(len(norm) - SHINGLE + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _mod_prime(x: np.ndarray) -> np.ndarray:
    """x mod p for any uint64 x: since 2^61 = 1 (mod p), the bits above 61 fold onto the low ones."""
    x = (x & np.uint64(_PRIME)) + (x >> np.uint64(61))
    return np.where(x >= np.uint64(_PRIME), x - np.uint64(_PRIME), x)


def signature(shingle_set: frozenset[str]) -> np.ndarray:
    """The MinHash signature: per permutation, the least (a*x + b) mod p over the shingles' 32-bit hashes x."""
    x = np.fromiter((zlib.crc32(s.encode()) for s in shingle_set), dtype=np.uint64, count=len(shingle_set))[:, None]
    # a*x needs up to 93 bits, so it is split at bit 32 of a: a_low*x < 2^64 and a_high*x < 2^61, and
    # a_high*x*2^32 mod p is that product rotated by 32 within 61 bits (its top 32 bits wrap around to the bottom).
    # The three terms then sum to less than 2^63, so one reduction at the end is enough.
    low = _mod_prime(x * _A_LOW)
    high = x * _A_HIGH
    rotated = ((high & np.uint64((1 << 29) - 1)) << np.uint64(32)) + (high >> np.uint64(29))
    return _mod_prime(low + rotated + _B).min(axis=0)


def band_keys(shingle_set: frozenset[str]) -> list[int]:
    """The LSH band keys of a shingle set, as signed 63-bit integers (they are stored in a BigIntegerField)."""
    values = signature(shingle_set)
    keys = []
    for band in range(BANDS):
        digest = hashlib.blake2b(values[band * ROWS:(band + 1) * ROWS].tobytes(), digest_size=8,
                                 person=band.to_bytes(2, "big")).digest()
        keys.append(int.from_bytes(digest, "big") >> 1)
    return keys


@dataclass
class Candidate:
    text: str
    exemplars: list[str] = field(default_factory=list)
    hash: str = ""
    shingles: frozenset[str] = frozenset()
    bands: list[int] = field(default_factory=list)
    reason: str = ""  # a code such as "near_duplicate"; empty when the candidate passed
    detail: str = ""  # shown to people: the reason with its evidence

    def __post_init__(self):
        self.hash = content_hash(self.text)
        self.shingles = shingles(self.text)
        self.bands = band_keys(self.shingles)


class ProjectIndex(Protocol):
    """What the project already holds (services implement it with two indexed queries)."""

    def existing_hashes(self, hashes: set[str]) -> dict[str, int]: ...  # content hash -> an item id

    def near_candidates(self, bands: set[int]) -> dict[int, tuple[str, set[int]]]: ...  # id -> (text, bands hit)


# ---------------------------------------------------------------------------------------------------------------------
# Individual checks

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Payment card numbers (ISO/IEC 7812) of the card networks start with 2-6; 13-digit runs starting with 9 are usually
# ISBNs and EANs, a tenth of which pass the Luhn check by chance.
_CARD = re.compile(r"(?<![\w-])[2-6](?:[ -]?\d){12,18}(?![\w-])")
# Printed in groups of four or compact: country code, two check digits, 11-30 letters and digits (ISO 13616).
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """The ISO 13616 check: country and check digits moved to the end, letters as 10-35, the number mod 97 is 1."""
    iban = iban.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    return int("".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])) % 97 == 1


def pii_found(text: str) -> str:
    """``pii_email``, ``pii_iban``, ``pii_card`` or ``pii_phone`` for the first kind found, else ``""``."""
    if _EMAIL.search(text):
        return "pii_email"
    if any(iban_ok(match.group()) for match in _IBAN.finditer(text)):
        return "pii_iban"
    # The digits of an IBAN-shaped run (a mistyped one, say) are not a card or phone number of their own.
    text = _IBAN.sub(" ", text)
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return "pii_card"
    # Leniency.VALID: the number must exist in the numbering plan, which is what tells a phone number from an order
    # number, a date, an IP address or an ISBN; numbers without a +country code are read in the configured region.
    if next(iter(phonenumbers.PhoneNumberMatcher(text, settings.PII_PHONE_REGION, leniency=Leniency.VALID)), None):
        return "pii_phone"
    return ""


def _word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.casefold())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def leaked(text: str, exemplars: list[str], n: int) -> bool:
    if n <= 0 or not exemplars:
        return False
    grams = _word_ngrams(text, n)
    return any(grams & _word_ngrams(exemplar, n) for exemplar in exemplars)


# ---------------------------------------------------------------------------------------------------------------------
# The pipeline


def apply_filters(candidates: list[Candidate], *, settings: FilterSettings, index: ProjectIndex) -> None:
    """Set ``reason``/``detail`` on every candidate that fails a filter; earlier candidates win ties in a batch."""
    for c in candidates:
        length = len(c.text.strip())
        if length == 0:
            c.reason, c.detail = "empty", "empty text"
        elif length < settings.min_chars:
            c.reason, c.detail = "too_short", f"too short: {length} < {settings.min_chars} characters"
        elif length > settings.max_chars:
            c.reason, c.detail = "too_long", f"too long: {length} > {settings.max_chars} characters"
        elif settings.pii and (kind := pii_found(c.text)):
            c.reason, c.detail = kind, f"personal data: {kind.removeprefix('pii_')}"
        elif leaked(c.text, c.exemplars, settings.leakage_words):
            c.reason = "leakage"
            c.detail = f"leakage: {settings.leakage_words}+ words verbatim from an exemplar shown"

    live = [c for c in candidates if not c.reason]
    existing = index.existing_hashes({c.hash for c in live})
    seen: set[str] = set()
    for c in live:
        if c.hash in existing:
            c.reason, c.detail = "duplicate", f"duplicate of item #{existing[c.hash]}"
        elif c.hash in seen:
            c.reason, c.detail = "duplicate", "duplicate within the batch"
        seen.add(c.hash)

    if settings.near_duplicate <= 0:
        return
    live = [c for c in live if not c.reason]
    others = index.near_candidates({band for c in live for band in c.bands})
    other_shingles = {item_id: (shingles(text), hit) for item_id, (text, hit) in others.items()}
    kept: list[Candidate] = []
    for c in live:
        best_id, best = None, 0.0
        own = set(c.bands)
        for item_id, (s, hit) in other_shingles.items():
            if not own & hit:
                continue  # not a candidate of this sample: only shared bands make one (bounded cost)
            score = jaccard(c.shingles, s)
            if score > best:
                best_id, best = item_id, score
        if best >= settings.near_duplicate:
            c.reason, c.detail = "near_duplicate", f"near duplicate of item #{best_id} (similarity {best:.2f})"
            continue
        twin = max(((jaccard(c.shingles, k.shingles), k) for k in kept), default=(0.0, None), key=lambda t: t[0])
        if twin[0] >= settings.near_duplicate:
            c.reason, c.detail = "near_duplicate", f"near duplicate within the batch (similarity {twin[0]:.2f})"
            continue
        kept.append(c)
