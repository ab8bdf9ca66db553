"""Each quality measure against a small example computed by hand (or taken from the measure's textbook)."""
import pytest

from annotation.dashboard import metrics


def test_distinct_n_on_a_tiny_corpus():
    corpus = ["the cat sat", "the cat ran"]
    # unigrams: the cat sat the cat ran -> 4 distinct of 6; bigrams: (the cat) (cat sat) (the cat) (cat ran) -> 3 of 4
    assert metrics.distinct_n(corpus, 1) == pytest.approx(4 / 6)
    assert metrics.distinct_n(corpus, 2) == pytest.approx(3 / 4)


def test_distinct_n_ignores_case_and_punctuation_and_is_none_without_ngrams():
    assert metrics.distinct_n(["Yes!", "yes."], 1) == pytest.approx(1 / 2)
    assert metrics.distinct_n(["one", "two"], 2) is None


def test_nearest_neighbour_similarity_finds_the_twin():
    sims = metrics.nearest_neighbour_similarities(["red apple pie", "red apple pie", "quantum field theory"])
    assert sims[0] == pytest.approx(1.0)
    assert sims[1] == pytest.approx(1.0)
    assert sims[2] == pytest.approx(0.0)


def test_nearest_neighbour_similarity_works_across_blocks(monkeypatch):
    monkeypatch.setattr(metrics, "_SIMILARITY_BLOCK", 2)
    texts = ["alpha beta", "gamma delta", "epsilon zeta", "alpha beta"]
    sims = metrics.nearest_neighbour_similarities(texts)
    assert list(sims.round(6)) == [1.0, 0.0, 0.0, 1.0]


def test_diversity_of_a_small_sample():
    result = metrics.diversity(["The cat sat", "the  cat sat", "a dog ran far"])
    assert result["n"] == 3
    assert result["exact_duplicate_rate"] == pytest.approx(1 / 3)
    assert result["near_duplicate_rate"] == pytest.approx(2 / 3)
    assert result["mean_nn_similarity"] == pytest.approx(2 / 3)
    assert result["distinct_1"] == pytest.approx(7 / 10)  # the cat sat a dog ran far, of 10 words


def test_diversity_refuses_an_unbounded_sample():
    with pytest.raises(ValueError, match="at most"):
        metrics.diversity(["x"] * (metrics.MAX_SIMILARITY_SAMPLE + 1))


def test_cohen_kappa_of_a_known_two_by_two_table():
    # yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5, kappa = 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert metrics.cohen_kappa(a, b) == pytest.approx(0.4)


def test_cohen_kappa_is_undefined_when_only_one_answer_was_ever_given():
    assert metrics.cohen_kappa(["y", "y"], ["y", "y"]) is None
    assert metrics.cohen_kappa(["y"], ["n"]) is None


def test_krippendorff_alpha_textbook_nominal_example_with_missing_values():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 observers x 12 units, nominal: 0.743.
    rows = ["1 2 3 3 2 1 4 1 2 . . .", "1 2 3 3 2 2 4 1 2 5 . 3", ". 3 3 3 2 3 4 2 2 5 1 .",
            "1 2 3 3 2 4 4 1 2 5 1 ."]
    units = [[v for v in column if v != "."] for column in zip(*(r.split() for r in rows))]
    assert metrics.krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_two_coders_binary_example():
    # Krippendorff (2011), two observers, ten units, binary: alpha = 0.095.
    a = "0 1 0 0 0 0 0 0 1 0".split()
    b = "1 1 1 0 0 1 0 0 0 0".split()
    assert metrics.krippendorff_alpha_nominal(list(zip(a, b))) == pytest.approx(0.095, abs=5e-4)


def test_krippendorff_alpha_perfect_agreement_and_undefined_cases():
    assert metrics.krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert metrics.krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None
    assert metrics.krippendorff_alpha_nominal([["a"], ["b"]]) is None


def test_pairwise_kappa_weights_pairs_by_shared_units():
    ratings = {
        1: {10: "y", 20: "y", 30: "y"},
        2: {10: "n", 20: "n", 30: "y"},
        3: {10: "y", 20: "n"},
        4: {10: "n", 20: "n"},
    }
    result = metrics.pairwise_kappa(ratings)
    by_pair = {tuple(p["raters"]): p for p in result["pairs"]}
    assert by_pair[(10, 20)]["n"] == 4
    assert by_pair[(10, 20)]["kappa"] == pytest.approx(metrics.cohen_kappa(list("ynyn"), list("ynnn")))
    # (y, y) and (n, y): observed agreement 0.5 equals chance agreement 0.5
    assert by_pair[(20, 30)]["n"] == 2
    assert by_pair[(20, 30)]["kappa"] == pytest.approx(0.0)
    defined = [p for p in result["pairs"] if p["kappa"] is not None]
    expected = sum(p["kappa"] * p["n"] for p in defined) / sum(p["n"] for p in defined)
    assert result["mean_kappa"] == pytest.approx(expected)


def test_confusion_single_label_rows_are_human_columns_llm():
    pairs = {(("pos",), ("pos",)): 8, (("neg",), ("pos",)): 2, (("neg",), ("neg",)): 5, ((), ("neg",)): 1}
    result = metrics.confusion(pairs, ["pos", "neg"])
    assert result["axis"] == ["pos", "neg", "(none)"]
    assert result["matrix"] == [[8, 2, 0], [0, 5, 1], [0, 0, 0]]
    assert result["agreement"] == pytest.approx(13 / 16)
    neg = result["per_label"]["neg"]
    assert (neg["tp"], neg["fp"], neg["fn"], neg["tn"]) == (5, 2, 1, 8)
    assert neg["precision"] == pytest.approx(5 / 7)
    assert neg["recall"] == pytest.approx(5 / 6)
    assert neg["f1"] == pytest.approx(2 * (5 / 7) * (5 / 6) / ((5 / 7) + (5 / 6)))


def test_confusion_multi_label_counts_per_label():
    pairs = {(("a", "b"), ("a",)): 3, (("a",), ("a", "b")): 1}
    result = metrics.confusion(pairs, ["a", "b"], multi_label=True)
    assert result["per_label"]["a"]["tp"] == 4
    b = result["per_label"]["b"]
    assert (b["tp"], b["fp"], b["fn"], b["tn"]) == (0, 3, 1, 0)
    assert b["f1"] == 0.0
    assert result["agreement"] == 0.0


def test_coverage_marks_thin_cells_and_keeps_undeclared_values():
    counts = {("pos", "sports"): 10, ("pos", "finance"): 9, ("neg", "sports"): 8, ("neg", "finance"): 1,
              ("neg", "weather"): 2}
    result = metrics.coverage(counts, ["pos", "neg"], ["sports", "finance"])
    assert result["cols"] == ["sports", "finance", "weather"]
    assert result["matrix"] == [[10, 9, 0], [8, 1, 2]]
    # even spread: 30 / 6 = 5 per cell; thin below 2.5
    assert result["thin"] == [[False, False, True], [False, True, True]]
    assert result["thin_cells"] == 3


def test_review_rates_overall_and_per_label():
    counts = {("pos", "accept"): 6, ("pos", "edit"): 2, ("pos", "reject"): 2, ("neg", "accept"): 1}
    result = metrics.review_rates(counts)
    assert result["overall"]["n"] == 11
    assert result["overall"]["accept_rate"] == pytest.approx(7 / 11)
    assert result["per_label"]["pos"]["edit_rate"] == pytest.approx(0.2)
    assert result["per_label"]["neg"]["reject_rate"] == 0.0


def test_routing_counts_reviews_saved():
    result = metrics.routing({"auto_accepted": 70, "accepted": 20, "rejected": 5, "needs_review": 5, "filtered": 9,
                              "proposed": 3}, human_reviews=27)
    assert result["scored"] == 100
    assert result["auto_share"] == pytest.approx(0.7)
    assert result["human_share"] == pytest.approx(0.3)
    assert result["reviews_saved"] == 70
    assert result["human_reviews"] == 27
