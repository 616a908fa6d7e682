"""ACR TI-RADS as the 2017 white paper writes it: every category's values and points, echogenic
foci that add up, the spongiform rule, the chart, incomplete assessments, the recommendation with
its follow-up intervals, one answer for a nodule across its views."""

from __future__ import annotations

import numpy as np
import pytest

from thyronet.data.tirads import (
    CATEGORIES,
    View,
    assess,
    combine_views,
    expected_points,
    from_descriptors,
    level_for_points,
    recommend,
    significant_growth,
)
from thyronet.data.vocabulary import DESCRIPTOR_CLASSES

SOLID_HYPO = {"composition": "solid or almost completely solid", "echogenicity": "hypoechoic", "margin": "smooth",
              "echogenic foci": ["none"]}


def test_the_chart_lists_every_value_with_its_points():
    assert {name: dict(c.points) for name, c in CATEGORIES.items()} == {
        "composition": {"cystic or almost completely cystic": 0, "spongiform": 0, "mixed cystic and solid": 1,
                        "solid or almost completely solid": 2, "obscured by calcification": 2},
        "echogenicity": {"anechoic": 0, "hyperechoic": 1, "isoechoic": 1, "hypoechoic": 2, "very hypoechoic": 3,
                         "cannot be determined": 1},
        "shape": {"wider-than-tall": 0, "taller-than-wide": 3},
        "margin": {"smooth": 0, "ill-defined": 0, "lobulated or irregular": 2, "extrathyroidal extension": 3,
                   "cannot be determined": 0},
        "echogenic foci": {"none": 0, "large comet-tail artefacts": 0, "macrocalcifications": 1,
                           "peripheral (rim) calcifications": 2, "punctate echogenic foci": 3},
    }
    assert [name for name, c in CATEGORIES.items() if c.multiple] == ["echogenic foci"]


@pytest.mark.parametrize("points, level", [(0, "TR1"), (1, "TR2"), (2, "TR2"), (3, "TR3"), (4, "TR4"), (6, "TR4"),
                                           (7, "TR5"), (14, "TR5")])
def test_the_level_chart(points, level):
    assert level_for_points(points) == level


def test_a_taller_than_wide_nodule_gets_its_three_shape_points():
    """A 7.8 x 6.3 mm solid hypoechoic nodule: TR4 on four categories, TR5 with its shape, and a
    TR5 nodule of 5 mm or more is followed up yearly for five years."""
    wide = assess({**SOLID_HYPO, "shape": "wider-than-tall"})
    tall = assess({**SOLID_HYPO, "shape": "taller-than-wide"})
    assert (wide.points, wide.level, tall.points, tall.level) == (4, "TR4", 7, "TR5")
    assert recommend(wide, 7.8).action == "no FNA or follow-up"
    advice = recommend(tall, 7.8)
    assert advice.action == "follow-up" and advice.follow_up_years == (1, 2, 3, 4, 5)
    assert "1, 2, 3, 4 and 5 years" in advice.reason


def test_an_anechoic_cyst_is_tr1():
    cyst = assess({"composition": "cystic or almost completely cystic", "echogenicity": "anechoic",
                   "shape": "wider-than-tall", "margin": "smooth", "echogenic foci": "large comet-tail artefacts"})
    assert (cyst.points, cyst.level) == (0, "TR1") and recommend(cyst, 40).action == "no FNA or follow-up"


def test_echogenic_foci_add_up_and_the_rarer_categories_count():
    both = assess({**SOLID_HYPO, "shape": "wider-than-tall", "echogenic foci": ["macrocalcifications", "punctate echogenic foci"]})
    assert both.points_by_category["echogenic foci"] == 4 and both.points == 8
    invasive = assess({**SOLID_HYPO, "shape": "wider-than-tall", "margin": "extrathyroidal extension",
                       "echogenic foci": ["peripheral (rim) calcifications"]})
    assert invasive.points == 2 + 2 + 0 + 3 + 2 and invasive.level == "TR5"


def test_a_spongiform_nodule_collects_no_other_points_and_needs_no_other_category():
    spongiform = assess({"composition": "spongiform", "echogenicity": "very hypoechoic", "echogenic foci": ["punctate echogenic foci"]})
    assert (spongiform.points, spongiform.level, spongiform.spongiform) == (0, "TR1", True)
    assert "spongiform" in spongiform.note()


def test_one_point_is_read_as_tr2_and_says_so():
    one = assess({"composition": "mixed cystic and solid", "echogenicity": "anechoic", "shape": "wider-than-tall",
                  "margin": "smooth", "echogenic foci": "none"})
    assert (one.points, one.level) == (1, "TR2") and "not in the chart" in one.note()


def test_a_missing_category_leaves_the_level_incomplete_and_recommends_nothing():
    partial = assess(SOLID_HYPO)  # no shape
    assert partial.level is None and partial.points is None and partial.missing == ("shape",)
    assert recommend(partial, 30).action == "incomplete" and "shape" in partial.note()
    assert assess({**SOLID_HYPO, "echogenicity": None}).missing == ("echogenicity", "shape")


@pytest.mark.parametrize("values, problem", [
    ({"composition": "dense"}, "unknown composition value 'dense'"),
    ({"margin": ["smooth", "ill-defined"]}, "margin takes one value"),
    ({"echogenic foci": ["none", "macrocalcifications"]}, "'none' cannot go with"),
    ({"calcifications": "none"}, "unknown ACR TI-RADS category 'calcifications'"),
])
def test_values_acr_does_not_list_are_refused(values, problem):
    with pytest.raises(ValueError, match=problem):
        assess(values)


# one set of values per level, then the white paper's size thresholds case by case
AT_LEVEL = {
    "TR1": {"composition": "cystic or almost completely cystic", "echogenicity": "anechoic"},
    "TR2": {"composition": "mixed cystic and solid", "echogenicity": "isoechoic"},
    "TR3": {"composition": "solid or almost completely solid", "echogenicity": "isoechoic"},
    "TR4": {"composition": "solid or almost completely solid", "echogenicity": "hypoechoic"},
    "TR5": {"composition": "solid or almost completely solid", "echogenicity": "very hypoechoic", "margin": "lobulated or irregular"},
}
WHITE_PAPER = [
    ("TR1", 40, "no FNA or follow-up"), ("TR2", 40, "no FNA or follow-up"),
    ("TR3", 25, "FNA"), ("TR3", 24.9, "follow-up"), ("TR3", 15, "follow-up"), ("TR3", 14.9, "no FNA or follow-up"),
    ("TR4", 15, "FNA"), ("TR4", 14.9, "follow-up"), ("TR4", 10, "follow-up"), ("TR4", 9.9, "no FNA or follow-up"),
    ("TR5", 10, "FNA"), ("TR5", 9.9, "follow-up"), ("TR5", 5, "follow-up"), ("TR5", 4.9, "no FNA or follow-up"),
]
INTERVALS = {"TR3": (1, 3, 5), "TR4": (1, 2, 3, 5), "TR5": (1, 2, 3, 4, 5)}


@pytest.mark.parametrize("level, mm, action", WHITE_PAPER)
def test_recommendation_follows_the_white_paper(level, mm, action):
    assessment = assess({"shape": "wider-than-tall", "margin": "smooth", "echogenic foci": "none", **AT_LEVEL[level]})
    assert assessment.level == level
    advice = recommend(assessment, mm)
    assert advice.action == action
    assert advice.follow_up_years == (INTERVALS[level] if action == "follow-up" else ())


def test_without_a_size_the_thresholds_are_said():
    advice = recommend(assess({**SOLID_HYPO, "shape": "wider-than-tall"}), None)
    assert advice.action == "size needed" and "15 mm" in advice.reason and "10 mm" in advice.reason


def test_one_nodule_across_its_views_gets_one_size_one_set_of_categories_one_level():
    transverse = View({**SOLID_HYPO, "shape": "taller-than-wide", "echogenic foci": ["macrocalcifications"]}, 8.0)
    longitudinal = View({**SOLID_HYPO, "echogenicity": "isoechoic", "shape": "wider-than-tall",
                         "echogenic foci": ["punctate echogenic foci"]}, 11.5)
    nodule = combine_views([transverse, longitudinal])
    assert nodule.max_diameter_mm == 11.5  # the largest measured
    values = nodule.assessment.values
    assert values["shape"] == ("taller-than-wide",) and values["echogenicity"] == ("hypoechoic",)  # most suspicious seen
    assert set(values["echogenic foci"]) == {"macrocalcifications", "punctate echogenic foci"}
    assert nodule.assessment.points == 2 + 2 + 3 + 0 + 4 and nodule.recommendation.action == "FNA"  # TR5, >= 10 mm
    assert [v.level for v in nodule.views] == ["TR5", "TR4"]  # each view's own beside it
    assert combine_views([View({**SOLID_HYPO, "echogenic foci": ["none"]}, None)]).recommendation.action == "incomplete"


def test_significant_growth_as_acr_defines_it():
    assert significant_growth([10, 8, 6], [12, 10, 6])  # +20% and +2 mm in two dimensions
    assert not significant_growth([10, 8, 6], [12, 9.5, 6])  # the second grows 1.5 mm
    assert significant_growth([10, 10, 10], [11.5, 11.5, 11.5])  # +52% volume
    with pytest.raises(ValueError):
        significant_growth([10, 8], [10, 8, 6])


def test_the_models_descriptors_in_acr_words_score_as_their_expected_points():
    """Every value a descriptor head predicts maps onto an ACR value, and the expected points of a
    certain prediction are its assessment's points on those four categories."""
    for head, classes in DESCRIPTOR_CLASSES.items():
        for index, value in enumerate(classes):
            values = from_descriptors({head: value})
            (category, picked), = values.items()
            points = CATEGORIES[category].points[picked[0]]
            assert expected_points({head: np.eye(len(classes))[[index]]})[0] == points
    proposed = from_descriptors({"composition": "dense", "echogenicity": "marked hypoechoic", "margins": "spiculated",
                                 "calcifications": "microcalcifications"}, taller_than_wide=False)
    assert assess(proposed).points == 2 + 3 + 0 + 2 + 3
    assert "shape" not in from_descriptors({"composition": "solid"})  # no outline, no shape


def test_confirmed_acr_values_go_back_to_the_heads_vocabulary_only_where_unambiguous():
    from thyronet.data.tirads import to_descriptors

    confirmed = {"composition": ["solid or almost completely solid"], "echogenicity": ["very hypoechoic"],
                 "margin": ["lobulated or irregular"], "echogenic foci": ["macrocalcifications", "punctate echogenic foci"]}
    assert to_descriptors(confirmed) == {"composition": "solid", "echogenicity": "marked hypoechoic",
                                         "calcifications": "microcalcifications"}  # lobulated: micro, macro or spiculated
    assert to_descriptors({"composition": ["mixed cystic and solid"], "margin": ["smooth"]}) == {"margins": "well defined"}
