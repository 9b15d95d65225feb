"""Reliability score, flagging and the calibration table/figure on synthetic scores and errors."""

import numpy as np
import pytest

from emdiffuse.evaluation.calibration import (
    PAPER_THRESHOLD, calibration_table, flag_unreliable, paper_score, rank_test, ranks_errors, reliability_score,
)
from emdiffuse.reporting.plots.calibration import calibration_figure

from conftest import assert_figure_has_content


def test_paper_score_is_99th_percentile():
    uncertainty = np.linspace(0.0, 1.0, 10000).reshape(100, 100)
    assert paper_score(uncertainty) == pytest.approx(0.99)
    assert paper_score(np.zeros((8, 8))) == 0.0
    with pytest.raises(ValueError, match="finite"):
        paper_score(np.full((4, 4), np.nan))


def test_reliability_score_is_relative_to_the_prediction_contrast():
    """The same sample spread on a flatter prediction is less reliable; any intensity scaling of
    samples and prediction alike (e.g. [0, 1] -> [-1, 1]) leaves the score unchanged."""
    rng = np.random.default_rng(0)
    uncertainty, prediction = rng.uniform(0, 0.1, (64, 64)), rng.normal(0.5, 0.2, (64, 64))
    score = reliability_score(uncertainty, prediction)
    assert score == pytest.approx(paper_score(uncertainty) / prediction.std())
    assert reliability_score(uncertainty, 0.5 + (prediction - 0.5) / 2) == pytest.approx(2 * score)
    assert reliability_score(2 * uncertainty, 2 * prediction - 1) == pytest.approx(score)
    assert reliability_score(uncertainty, np.full((64, 64), 0.3)) == np.inf
    with pytest.raises(ValueError, match="shape"):
        reliability_score(uncertainty, prediction[:32])


def test_flag_is_strictly_above_threshold():
    np.testing.assert_array_equal(flag_unreliable([0.05, PAPER_THRESHOLD, 0.2], PAPER_THRESHOLD),
                                  [False, False, True])


def synthetic(correlated: bool, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.02, 0.25, n)
    errors = scores + rng.normal(0, 0.01, n) if correlated else rng.uniform(0.02, 0.25, n)
    return scores, errors


def test_correlated_scores_catch_bad_predictions():
    scores, errors = synthetic(correlated=True)
    bad_error = np.quantile(errors, 0.8)
    table = calibration_table(scores, errors, threshold=0.12, bad_error=bad_error)
    assert table["spearman"] > 0.95
    assert table["bad_share"] == pytest.approx(0.2)
    assert table["flagged_share"] == pytest.approx(np.mean(scores > 0.12))
    # a low threshold flags ~60%: every bad image caught, a third of the flagged ones are bad
    assert table["recall"] == 1.0 and table["precision"] == pytest.approx(0.2 / table["flagged_share"])
    tight = calibration_table(scores, errors, threshold=np.quantile(scores, 0.8), bad_error=bad_error)
    assert tight["recall"] > 0.85 and tight["precision"] > 0.85
    sweep = table["sweep"]
    assert len(sweep["threshold"]) == len(scores)
    assert np.all(np.diff(sweep["recall"]) <= 0)  # raising the threshold never catches more
    assert np.all(np.diff(sweep["flagged_share"]) <= 0)


def test_random_scores_catch_at_chance():
    scores, errors = synthetic(correlated=False)
    table = calibration_table(scores, errors, threshold=0.12, bad_error=np.quantile(errors, 0.8))
    assert abs(table["spearman"]) < 0.15
    assert table["precision"] == pytest.approx(0.2, abs=0.08)  # = the share of bad images
    assert table["recall"] == pytest.approx(table["flagged_share"], abs=0.12)


def test_rank_test_is_exact_for_few_images_and_says_when_a_ranking_is_chance():
    """Six images: 720 orderings, enumerated; a perfect ranking happens once (p = 1/720), Spearman
    0.66 about one time in eleven (not shown at 5%); many correlated images: p at its floor."""
    six = np.arange(6.0)
    rho, p = rank_test(six, six * 2 + 1)
    assert rho == pytest.approx(1.0) and p == pytest.approx(1 / 720)
    rho, p = rank_test(six, np.array([1.0, 2, 6, 3, 4, 5]))
    assert rho == pytest.approx(0.657, abs=1e-3) and p == pytest.approx(63 / 720)
    assert ranks_errors(rho, p) == "not shown"
    assert rank_test(six, -six)[1] == pytest.approx(1.0)  # ranks them backwards: every ordering does as well
    scores, errors = synthetic(correlated=True, n=40)
    rho, p = rank_test(scores, errors)
    assert rho > 0.9 and p == pytest.approx(1 / 10000) and ranks_errors(rho, p) == "yes"
    assert rank_test(scores, errors) == (rho, p)  # seeded: the same p every run
    assert all(np.isnan(rank_test(np.full(6, 0.1), six)))
    assert ranks_errors(float("nan"), float("nan")) == "not shown"


def test_edge_cases_are_defined():
    scores, errors = synthetic(correlated=True, n=20)
    no_bad = calibration_table(scores, errors, threshold=0.12, bad_error=1.0)
    assert no_bad["bad_share"] == 0.0 and np.isnan(no_bad["recall"]) and no_bad["precision"] == 0.0
    all_flagged = calibration_table(scores, errors, threshold=0.0, bad_error=0.1)
    assert all_flagged["flagged_share"] == 1.0 and all_flagged["recall"] == 1.0
    none_flagged = calibration_table(scores, errors, threshold=1.0, bad_error=0.1)
    assert none_flagged["recall"] == 0.0 and np.isnan(none_flagged["precision"])
    constant = calibration_table(np.full(5, 0.1), errors[:5], threshold=0.12, bad_error=0.1)
    assert np.isnan(constant["spearman"]) and len(constant["sweep"]["threshold"]) == 1
    single = calibration_table([0.3], [0.5], threshold=0.12, bad_error=0.1)
    assert single["recall"] == 1.0 and np.isnan(single["spearman"])
    with pytest.raises(ValueError, match="equal-length"):
        calibration_table(scores, errors[:-1], 0.12, 0.1)


def test_calibration_figure_written(tmp_path):
    scores, errors = synthetic(correlated=True, n=60)
    labels = np.repeat(["low", "mid", "high"], 20)
    path = tmp_path / "figs" / "calibration.png"
    table = calibration_figure(str(path), scores, errors, 0.12, np.quantile(errors, 0.8), labels=labels)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert_figure_has_content(path)
    assert table["n"] == 60
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    calibration_figure(str(tmp_path / "no_bad.png"), scores, errors, 0.12, 10.0)  # nan recall in the title
