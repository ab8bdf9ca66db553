"""Uniform samples of a stream too large to hold: reservoir sampling, and a sample of a queryset's ids."""
import random


class Reservoir:
    """A uniform random sample of at most ``size`` of the values added (Algorithm R)."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng, self.seen, self.items = size, rng, 0, []

    def add(self, value) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(value)
        else:
            slot = self.rng.randrange(self.seen)
            if slot < self.size:
                self.items[slot] = value


def sample_ids(queryset, *, size: int, seed: int) -> list[int]:
    """Ids of a uniform sample of at most ``size`` rows of a queryset, streaming ids only."""
    reservoir = Reservoir(size, random.Random(seed))
    for item_id in queryset.values_list("id", flat=True).order_by().iterator(chunk_size=10_000):
        reservoir.add(item_id)
    return sorted(reservoir.items)
