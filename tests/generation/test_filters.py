"""Filters applied before a generated sample is stored (pure; the project index is a stub here)."""
import pytest

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
)


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


@pytest.mark.parametrize("text,kind", [
    ("Write to jane.doe+films@example.org for tickets.", "pii_email"),
    ("My card 4111 1111 1111 1111 was charged twice.", "pii_card"),
    ("Call me on +44 20 7946 0958 after the show.", "pii_phone"),
    ("Call me on (555) 867-5309 ext later.", "pii_phone"),
])
def test_pii_is_caught(text, kind):
    assert pii_found(text) == kind
    assert run([text])[0] == [kind]


@pytest.mark.parametrize("text", [
    "It ran 142 minutes and cost 3.5 million in 1999.",
    "Ticket 4111 1111 1111 1112 is not a valid card number.",  # fails Luhn; 16 digits is too many for a phone
    "The sequel opened on 2021-05-06 to mixed reviews.",
])
def test_numbers_that_are_not_pii_pass(text):
    assert pii_found(text) == ""


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
