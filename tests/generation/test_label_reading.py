"""Reading a label out of a model's answer (issue 20 #4): its probability renormalised over the labels' own tokens at
the label's position, never a token the format forbids; and verbalised answers that name no label are abstentions."""
import math

import pytest

from generation.outcomes import job_outcome
from generation.parsing import MalformedOutput, label_probs_from_logprobs, parse_verdict

LABELS = ["spam", "sports", "ham"]


def token(text, p, top=()):
    return {"token": text, "logprob": math.log(p), "top": [(t, math.log(q)) for t, q in top]}


def test_a_label_split_over_tokens_shares_its_first_token_with_another_label():
    # {"label": "spam"} where the tokenizer writes ' "' + 'sp' + 'am' + '"}', and "sports" also starts with "sp".
    tokens = [token('{"', 1), token("label", 1), token('":', 1),
              token(' "sp', 0.5, top=[(' "sp', 0.5), (' "ham', 0.2), (' "', 0.2), ("\n", 0.1)]),
              token("am", 0.6, top=[("am", 0.6), ("orts", 0.3), ("ice", 0.1)]),
              token('"}', 1)]
    probs = label_probs_from_logprobs(tokens, LABELS, "spam")
    # spam 0.5*0.6, sports 0.5*0.3, ham 0.2; ' "' alone leads to every label alike, "\n" to none, "spice" is none.
    assert probs == pytest.approx({"spam": 0.3 / 0.65, "sports": 0.15 / 0.65, "ham": 0.2 / 0.65}, abs=1e-6)


def test_tokens_the_format_forbids_take_no_probability():
    tokens = [token('{"label": "', 1), token("ham", 0.3, top=[("ham", 0.3), ("spam", 0.1), (" I", 0.4),
                                                              ("{", 0.2)]), token('"}', 1)]
    # "sports" is missing from the list: it gets the smallest listed probability (0.1) as its upper bound.
    assert label_probs_from_logprobs(tokens, LABELS, "ham") == pytest.approx({"ham": 0.6, "spam": 0.2, "sports": 0.2})


def test_an_alternative_without_the_opening_quote_is_not_at_the_label_position():
    tokens = [token('{"label":', 1), token(' "ham', 0.5, top=[(' "ham', 0.5), ("spam", 0.4), (' "spam', 0.1)]),
              token('"}', 1)]
    assert label_probs_from_logprobs(tokens, LABELS, "ham") == pytest.approx(
        {"ham": 5 / 7, "spam": 1 / 7, "sports": 1 / 7}, abs=1e-5)


def test_a_short_list_never_makes_the_chosen_label_certain():
    """Seen with SmolLM2 behind llama-cpp-python: the other label is not among the alternatives, which are all tokens
    the grammar forbids. It is less likely than any of them, not impossible."""
    tokens = [token('{"label": "', 1), token("spam", 0.6, top=[("spam", 0.6), (" I", 0.2), ("\n", 0.05)]),
              token('"}', 1)]
    assert label_probs_from_logprobs(tokens, ["spam", "ham"], "spam") == pytest.approx({"spam": 0.6 / 0.65,
                                                                                        "ham": 0.05 / 0.65})


def test_a_token_the_grammar_forced_against_the_model_says_nothing():
    # Recorded from SmolLM2-135M behind llama-cpp-python: "spam" written as s + pa + m, "pa" at logprob -16 while the
    # model wanted "ms", the forced token listed after the top alternatives. Read naively, ham would get everything.
    tokens = [token('{"label": "', 1), token("s", 0.004, top=[("We", 0.28), ("s", 0.004), ("h", 0.003)]),
              token("pa", 7e-8, top=[("ms", 0.75), ("ending", 0.03), ("pa", 7e-8)]),
              token("m", 2.5e-7, top=[("el", 0.06), ("m", 2.5e-7)]),
              token('"}', 0.35)]
    assert label_probs_from_logprobs(tokens, ["spam", "ham"], "spam") is None


def test_no_position_no_probability():
    assert label_probs_from_logprobs([token("hello", 1)], LABELS, "ham") is None
    assert label_probs_from_logprobs(None, LABELS, "ham") is None


@pytest.mark.parametrize("content,labels,unmatched", [
    ('{"label": "spam"}', ["spam"], ""),
    ('{"label": "SPAM"}', ["spam"], ""),  # the label's name in another case
    ('{"label": "junk"}', ["spam"], ""),  # a label word
    ("Spam.", ["spam"], ""),  # a bare verbalised answer
    ('{"label": "maybe"}', [], '"maybe"'),
    ('{"label": 7}', [], "7"),
    ('{"label": null}', [], ""),
])
def test_a_verbalised_answer_is_read_as_a_verbaliser_reads_it(content, labels, unmatched):
    verdict = parse_verdict(content, labels=LABELS, multi_label=False, words={"spam": ("junk", "offer")})
    assert (verdict.labels, verdict.unmatched) == (labels, unmatched)


def test_a_long_non_json_answer_is_still_malformed():
    with pytest.raises(MalformedOutput):
        parse_verdict("I think this message is probably spam because it offers money.", labels=LABELS,
                      multi_label=False)


def test_a_multi_label_answer_keeps_the_labels_it_names():
    verdict = parse_verdict('{"labels": ["spam", "other", "HAM"]}', labels=LABELS, multi_label=True)
    assert verdict.labels == ["spam", "ham"] and verdict.unmatched == '["other"]'


def test_abstentions_alone_do_not_fail_a_labelling_job_but_errors_do():
    assert job_outcome(labelling=True, requested=5, produced=0, filtered=0,
                       failed_by_reason={"abstained": 5}, examples={}) == (
        False, "0 of 5 items labelled; 5 not: The model abstained (5).")
    assert job_outcome(labelling=True, requested=5, produced=0, filtered=0,
                       failed_by_reason={"abstained": 2, "timeout": 3}, examples={}) == (
        True, "The requests timed out, retries included: 5 of 5 items failed.")
    assert job_outcome(labelling=False, requested=4, produced=2, filtered=1,
                       failed_by_reason={"malformed": 1}, examples={"malformed": {"message": "invalid_json: x"}}) == (
        False, "3 of 4 samples stored (2 for routing, 1 filtered); 1 not: The model's answers were not the JSON "
               "asked for (invalid_json: x) (1).")
