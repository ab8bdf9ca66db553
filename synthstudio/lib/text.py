"""Text normal form and its hash, for exact-duplicate detection that ignores case, width and spacing."""
import hashlib
import unicodedata


def normalise_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def content_digest(text: str) -> bytes:
    """SHA-256 of the normalised text, for exact-duplicate detection that ignores case and spacing."""
    return hashlib.sha256(normalise_text(text).encode()).digest()


def content_hash(text: str) -> str:
    """``content_digest`` as stored in ``Item.content_hash`` (hex)."""
    return content_digest(text).hex()
