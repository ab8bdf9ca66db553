"""The calibration arithmetic: sample size, stratified draw, the monotone error model, the dataset bound, target fill."""
import numpy as np
import pytest

from annotation.selection import calibration


@pytest.mark.parametrize("target,size", [(0.98, 189), (0.95, 73), (0.9, 35), (0.8, 30), (0.999, 400)])
def test_calibration_size_follows_the_target(target, size):
    assert calibration.calibration_size(target=target, available=10_000) == size


def test_calibration_size_never_exceeds_the_items_there_are():
    assert calibration.calibration_size(target=0.98, available=12) == 12


def test_the_draw_takes_each_strata_share_at_random_and_is_repeatable():
    ids = np.arange(1000)
    ambiguity = np.linspace(0, 1, 1000)
    drawn = calibration.calibration_draw(ids=ids, ambiguity=ambiguity, size=100, seed=1)
    assert len(drawn) == len(set(drawn)) == 100
    per_stratum = np.bincount(drawn // 200, minlength=5)
    assert per_stratum.tolist() == [20] * 5
    assert drawn.tolist() == calibration.calibration_draw(ids=ids, ambiguity=ambiguity, size=100, seed=1).tolist()
    assert drawn.tolist() != calibration.calibration_draw(ids=ids, ambiguity=ambiguity, size=100, seed=2).tolist()


def test_error_rates_never_fall_as_ambiguity_rises():
    rng = np.random.default_rng(0)
    pool = rng.random(5000)
    reviewed = rng.random(300)
    wrong = rng.random(300) < 0.1  # no relation to ambiguity: noise would make raw strata rates jump around
    model = calibration.error_model_fit(reviewed_ambiguity=reviewed, reviewed_wrong=wrong, pool_ambiguity=pool)
    assert np.all(np.diff(model.rates) >= 0)
    assert model.reviewed.sum() == 300 and model.errors.sum() == wrong.sum()


def test_an_item_gets_the_error_rate_of_its_stratum():
    pool = np.linspace(0, 1, 100)
    reviewed = np.array([0.05] * 50 + [0.95] * 50)
    wrong = np.array([False] * 50 + [True] * 25 + [False] * 25)
    model = calibration.error_model_fit(reviewed_ambiguity=reviewed, reviewed_wrong=wrong, pool_ambiguity=pool)
    low, high = model.p_error(np.array([0.01, 0.99]))
    assert low == pytest.approx(0.5 / 51)
    assert high == pytest.approx(25.5 / 51)


def _world(seed: int, n: int = 6000, error_scale: float = 0.9):
    rng = np.random.default_rng(seed)
    ambiguity = rng.beta(1, 6, n)
    wrong = rng.random(n) < np.clip(ambiguity * error_scale, 0, 1) ** 1.3
    return ambiguity, wrong


def test_the_lower_bound_covers_the_true_accuracy_of_what_is_auto_accepted():
    """Over many simulated projects, the declared bound is below the true accuracy at least ~95% of the time."""
    held = 0
    runs = 60
    for seed in range(runs):
        ambiguity, wrong = _world(seed)
        ids = np.arange(len(ambiguity))
        cal = calibration.calibration_draw(ids=ids, ambiguity=ambiguity, size=189, seed=seed)
        model = calibration.error_model_fit(reviewed_ambiguity=ambiguity[cal], reviewed_wrong=wrong[cal],
                                            pool_ambiguity=ambiguity)
        rest = np.setdiff1d(ids, cal)
        auto = rest[np.argsort(ambiguity[rest])][: len(rest) // 2]
        _, lower = calibration.dataset_bound(model=model, auto_ambiguity=ambiguity[auto], human_kept=len(cal),
                                             seed=seed)
        truth = 1 - wrong[auto].sum() / (len(cal) + len(auto))
        held += truth >= lower
    assert held / runs >= 0.9


def test_target_fill_keeps_the_bound_and_auto_accepts_the_least_ambiguous():
    ambiguity, wrong = _world(3)
    model = calibration.error_model_fit(reviewed_ambiguity=ambiguity[:400], reviewed_wrong=wrong[:400],
                                        pool_ambiguity=ambiguity[400:])
    plan = calibration.target_fill(model=model, candidates=ambiguity[400:], human_kept=400, keep_share=1.0,
                                   target=0.98, seed=1)
    assert 0 < plan.auto < len(ambiguity) - 400
    assert plan.lower_bound >= 0.98
    more = calibration.target_fill(model=model, candidates=ambiguity[400:], human_kept=400, keep_share=1.0,
                                   target=0.95, seed=1)
    assert more.auto > plan.auto


def test_a_weak_llm_is_declared_unreliable_and_a_good_one_is_not():
    ambiguity, wrong = _world(5)
    good = calibration.error_model_fit(reviewed_ambiguity=ambiguity[:189], reviewed_wrong=wrong[:189],
                                       pool_ambiguity=ambiguity)
    weak_wrong = np.random.default_rng(5).random(189) < 0.7
    weak = calibration.error_model_fit(reviewed_ambiguity=ambiguity[:189], reviewed_wrong=weak_wrong,
                                       pool_ambiguity=ambiguity)
    assert not calibration.llm_unreliable(model=good, target=0.98)
    assert calibration.llm_unreliable(model=weak, target=0.98)
