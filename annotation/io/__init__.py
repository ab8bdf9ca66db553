"""Data in and out: CSV/JSONL import (validated in full, written all-or-nothing) and streamed export."""
