"""Filters applied before a generated sample is stored (pure; the project index is a stub here), and the data
migration that recomputes the stored band keys (real database)."""
import importlib
import os
import random
import statistics
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from generation import filters
from generation.filters import (
    Candidate,
    FilterSettings,
    apply_filters,
    band_keys,
    jaccard,
    leaked,
    luhn_ok,
    pii_found,
    shingles,
    signature,
)
from generation.models import NearDuplicateKey
from tests.support.factories import make_item

REPO = Path(__file__).resolve().parents[2]


class StubIndex:
    def __init__(self, items=None):
        self.items = items or {}  # id -> text

    def existing_hashes(self, hashes):
        return {Candidate(text=t).hash: pk for pk, t in self.items.items() if Candidate(text=t).hash in hashes}

    def near_candidates(self, bands):
        return {pk: (t, set(band_keys(shingles(t))) & bands) for pk, t in self.items.items()
                if set(band_keys(shingles(t))) & bands}


def run(texts, index=None, exemplars=(), **settings):
    candidates = [Candidate(text=t, exemplars=list(exemplars)) for t in texts]
    apply_filters(candidates, settings=FilterSettings(**settings), index=index or StubIndex())
    return [c.reason for c in candidates], candidates


def test_clean_samples_pass():
    reasons, _ = run(["The plot was thin but the actors were great.", "A slow, dull evening at the cinema."])
    assert reasons == ["", ""]


@pytest.mark.parametrize("text,reason", [
    ("", "empty"), ("   ", "empty"), ("Too short", "too_short"), ("x" * 2001, "too_long"),
])
def test_length_limits(text, reason):
    assert run([text])[0] == [reason]


def test_length_thresholds_are_configurable():
    assert run(["Too short"], min_chars=5)[0] == [""]
    assert run(["A sentence of forty characters or so....."], max_chars=20)[0] == ["too_long"]


# What the PII filter must catch and what it must leave alone (the region is the default, US, unless a test sets it).
PII_TABLE = [
    # e-mail
    ("Write to jane.doe+films@example.org for tickets.", "pii_email"),
    ("Reach the box office at tickets@cinema.co.uk today.", "pii_email"),
    # payment cards: Luhn-valid, any usual grouping
    ("My card 4111 1111 1111 1111 was charged twice.", "pii_card"),
    ("Charged to 5500-0000-0000-0004 again.", "pii_card"),
    ("Amex 378282246310005 on file.", "pii_card"),
    # IBANs with a valid mod-97 checksum, printed and compact
    ("Pay into DE89 3704 0044 0532 0130 00 by Friday.", "pii_iban"),
    ("IBAN: GB82WEST12345698765432.", "pii_iban"),
    ("Refund to NO93 8601 1117 947 please.", "pii_iban"),
    ("Use FR14 2004 1010 0505 0001 3M02 606 for transfers.", "pii_iban"),
    # phone numbers: international, national (US), several punctuations
    ("Call me on +44 20 7946 0958 after the show.", "pii_phone"),
    ("Ring +33 1 42 68 53 00 for the Paris office.", "pii_phone"),
    ("Our Berlin desk is +49 30 901820.", "pii_phone"),
    ("tel: +1-650-253-0000", "pii_phone"),
    ("Call (212) 555-0123 for tickets.", "pii_phone"),
    ("Text 212.555.0123 when you arrive.", "pii_phone"),
    ("Dial 1-800-275-2273 for help.", "pii_phone"),
    ("Call 011 44 20 7946 0958 from the US.", "pii_phone"),
    # not personal data
    ("The screening is on 2024-06-11 10:30 in hall 2.", ""),
    ("Order 1234567890 has shipped.", ""),
    ("The server at 192.168.100.200 went down.", ""),
    ("ISBN 978-0-306-40615-7 is on the reading list.", ""),
    ("ISBN 978-81-241-5868-5 passes a Luhn check but is a book.", ""),
    ("ISBN 0-306-40615-2 is the old form.", ""),
    ("Pay into DE89 3704 0044 0532 0130 01 by Friday.", ""),  # checksum off by one digit
    ("Ticket 4111 1111 1111 1112 is not a valid card number.", ""),  # fails Luhn
    ("It ran 142 minutes and cost 3.5 million in 1999.", ""),
    ("The sequel opened on 2021-05-06 to mixed reviews.", ""),
    ("Released 06/11/2024 at 10:30, version 10.2.3.4.", ""),
    ("Between 1990-2000 the zip was 94043-1351.", ""),
    ("Serial 5551234567 on the back.", ""),
]


@pytest.mark.parametrize("text,kind", PII_TABLE)
def test_pii_true_and_false_positives(text, kind):
    assert pii_found(text) == kind


def test_a_pii_hit_filters_the_sample_with_its_kind():
    reasons, candidates = run(["Pay into DE89 3704 0044 0532 0130 00 by Friday."])
    assert reasons == ["pii_iban"] and candidates[0].detail == "personal data: iban"


def test_national_phone_numbers_are_read_in_the_configured_region(settings):
    text = "Ring the London office on 020 7946 0958 today."
    settings.PII_PHONE_REGION = "US"
    assert pii_found(text) == ""
    settings.PII_PHONE_REGION = "GB"
    assert pii_found(text) == "pii_phone"
    assert pii_found("Call (212) 555-0123 for tickets.") == ""  # a US national number means nothing in GB
    assert pii_found("call +1 212 555 0123") == "pii_phone"  # international form, whatever the region


@pytest.mark.parametrize("value,outcome", [("XX", "PII_PHONE_REGION='XX' is not a phone region"), ("gb", "GB")])
def test_the_phone_region_setting_must_be_a_known_region(value, outcome):
    env = dict(os.environ, PII_PHONE_REGION=value, DEBUG="true", SECRET_KEY="s" * 50)
    result = subprocess.run([sys.executable, "-c", "from synthstudio import settings; print(settings.PII_PHONE_REGION)"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert outcome in (result.stdout if result.returncode == 0 else result.stderr)


def test_pii_check_can_be_turned_off():
    assert run(["Mail me at a@b.co please, now."], pii=False)[0] == [""]


def test_luhn():
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")


def test_exact_duplicates_within_the_batch_and_against_the_project():
    index = StubIndex({42: "An old favourite, still charming."})
    reasons, candidates = run(["an OLD favourite,   still charming.", "Fresh text about a new film.",
                               "Fresh text about a new film."], index=index)
    assert reasons == ["duplicate", "", "duplicate"]
    assert "#42" in candidates[0].detail and "within the batch" in candidates[2].detail


def test_near_duplicates_within_the_batch_and_against_the_project():
    base = "The soundtrack was wonderful and the ending felt earned after a long second act."
    index = StubIndex({7: base})
    reasons, candidates = run([base.replace("wonderful", "quite wonderful"),
                               "Nothing in this documentary about bees held my attention for long.",
                               "Nothing in this documentary about bees really held my attention for long."],
                              index=index)
    assert reasons == ["near_duplicate", "", "near_duplicate"]
    assert "#7" in candidates[0].detail


def test_near_duplicate_threshold_is_configurable():
    a = "The soundtrack was wonderful and the ending felt earned after a long second act."
    b = a.replace("wonderful", "quite wonderful")
    assert jaccard(shingles(a), shingles(b)) < 0.99
    assert run([a, b], near_duplicate=0.99)[0] == ["", ""]
    assert run([a, b], near_duplicate=0)[0] == ["", ""]


def test_similar_band_keys_for_near_texts_and_different_for_others():
    a = band_keys(shingles("The soundtrack was wonderful and the ending felt earned after a long second act."))
    b = band_keys(shingles("The soundtrack was wonderful and the ending felt earned after a long 2nd act."))
    c = band_keys(shingles("Completely unrelated words about gardening tools and spring bulbs."))
    assert set(a) & set(b)
    assert not set(a) & set(c)


def text_pairs(*, low, high, count, seed):
    """Pairs of shingle sets of generated texts whose exact Jaccard lies in [low, high], with that Jaccard.

    Each pair is a random text of 15-40 words and a copy edited one word at a time (replace, insert, delete) until
    its Jaccard falls into the window; a copy that jumps past it is dropped.
    """
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 8))) for _ in range(3000)]
    pairs = []
    while len(pairs) < count:
        a = rng.choices(vocabulary, k=rng.randint(15, 40))
        a_shingles, b = shingles(" ".join(a)), list(a)
        while True:
            i, edit = rng.randrange(len(b)), rng.randrange(3)
            if edit == 0:
                b[i] = rng.choice(vocabulary)
            elif edit == 1 or len(b) < 4:
                b.insert(i, rng.choice(vocabulary))
            else:
                del b[i]
            b_shingles = shingles(" ".join(b))
            similarity = jaccard(a_shingles, b_shingles)
            if similarity < low:
                break
            if similarity <= high:
                pairs.append((a_shingles, b_shingles, similarity))
                break
    return pairs


def test_the_signature_is_exact_modular_arithmetic_with_full_range_multipliers():
    sample = shingles("The soundtrack was wonderful and the ending felt earned after a long second act.")
    prime = (1 << 61) - 1
    hashes = [zlib.crc32(s.encode()) for s in sample]
    expected = [min((int(a) * x + int(b)) % prime for x in hashes) for a, b in zip(filters._A, filters._B)]
    # Multipliers past 32 bits are both the fix (independent hashes) and where a 64-bit product would overflow.
    assert max(filters._A) > 1 << 32 and max(filters._B) > 1 << 32
    assert signature(sample).tolist() == expected


def test_candidate_recall_at_jaccard_0_7_is_as_documented():
    pairs = text_pairs(low=0.70, high=0.72, count=2000, seed=1)
    found = sum(bool(set(band_keys(a)) & set(band_keys(b))) for a, b, _ in pairs)
    # Documented: 1 - (1 - 0.7^4)^16 = 0.988; a sample of 2,000 pairs has a standard error of 0.0025.
    assert found / len(pairs) >= 0.985


def test_the_signature_estimates_jaccard_with_the_spread_of_independent_permutations():
    pairs = text_pairs(low=0.49, high=0.51, count=1000, seed=2)
    errors = [float((signature(a) == signature(b)).mean()) - similarity for a, b, similarity in pairs]
    # Each of 64 independent permutations agrees with probability J: s.d. sqrt(J(1-J)/64) = 0.0625 at J = 0.5.
    assert abs(statistics.fmean(errors)) < 0.01
    assert statistics.pstdev(errors) < 0.07


@pytest.mark.django_db
def test_the_migration_recomputes_every_stored_band_key_in_batches(project):
    from django.apps import apps

    items = [make_item(project, f"Stored sample number {i} about a film I watched twice.") for i in range(5)]
    unindexed = make_item(project, "An item whose keys were never stored stays that way.")
    stale = [NearDuplicateKey(project=project, item_id=item.pk, band=item.pk * 100 + b)
             for item in items for b in range(filters.BANDS)]
    NearDuplicateKey.objects.bulk_create([*stale, NearDuplicateKey(project=project, item_id=unindexed.pk + 10**6, band=1)])

    migration = importlib.import_module("generation.migrations.0003_minhash_full_range")
    migration.band_keys_recompute(apps, None, batch_size=2)

    stored = {}
    for item_id, band in NearDuplicateKey.objects.values_list("item_id", "band"):
        stored.setdefault(item_id, set()).add(band)
    assert stored == {item.pk: set(band_keys(shingles(item.text))) for item in items}


def test_leakage_is_a_long_verbatim_run_from_an_exemplar():
    exemplar = "I laughed from the opening credits to the very last scene of this film"
    copied = "Honestly I laughed from the opening credits to the very last scene, again."
    assert leaked(copied, [exemplar], 8)
    assert not leaked("I laughed a lot at the opening credits of this one.", [exemplar], 8)
    assert run([copied], exemplars=[exemplar])[0] == ["leakage"]
    assert run([copied], exemplars=[exemplar], leakage_words=0)[0] == [""]


def test_settings_from_config_fill_defaults():
    s = FilterSettings.from_config({"min_chars": "3", "pii": False})
    assert s.min_chars == 3 and s.pii is False and s.max_chars == FilterSettings().max_chars
