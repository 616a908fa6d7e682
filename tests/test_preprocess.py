import numpy as np
import pytest
import torch

from synthetic import SCAN, ultrasound_image
from thyronet.data.augment import AugmentConfig, build_transform
from thyronet.data.preprocess import (
    PreprocessConfig,
    fit_square,
    grow_box,
    jitter_box,
    largest_component,
    mask_box,
    mask_marks,
    outline_mask,
    preprocess,
    preprocess_with_geometry,
    scan_area_box,
)
from thyronet.data.region import RegionConfig, crop_region, expert_box, parse_box
from thyronet.errors import ThyronetError

NODULE = (200, 100, 320, 200)
ELLIPSE = tuple((200 + 60 + 60 * np.cos(t), 150 + 50 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40))


def test_scan_area_box_drops_frame_bar_and_text():
    x0, y0, x1, y1 = scan_area_box(ultrasound_image(0, True, NODULE))
    sx0, sy0, sx1, sy1 = SCAN
    assert abs(x0 - sx0) <= 3 and abs(y0 - sy0) <= 3 and abs(x1 - sx1) <= 3 and abs(y1 - sy1) <= 3


def test_scan_area_box_keeps_both_halves_of_a_dual_view():
    image = np.zeros((360, 560), np.uint8)
    rng = np.random.default_rng(0)
    image[20:300, 40:260] = rng.integers(40, 200, (280, 220))
    image[20:300, 290:510] = rng.integers(40, 200, (280, 220))
    box = scan_area_box(image)
    assert np.abs(np.subtract(box, (40, 20, 510, 300))).max() <= 3


def test_blank_image_keeps_the_whole_frame():
    assert scan_area_box(np.zeros((50, 80), np.uint8)) == (0, 0, 80, 50)


def test_outline_mask_follows_every_geometric_step():
    image = ultrasound_image(0, True, NODULE)
    region = grow_box(mask_box(outline_mask(image.shape, [ELLIPSE])), image.shape, 0.25)
    for config, crop in ((PreprocessConfig(size=64), None), (PreprocessConfig(size=64), region),
                         (PreprocessConfig(size=96, scan_crop=False), None)):
        prepared, mask = preprocess(image, config, [ELLIPSE], crop)
        assert prepared.shape == mask.shape == (config.size, config.size)
        inside, outside = prepared[mask > 0].mean(), prepared[(mask == 0) & (prepared > 0)].mean()
        assert inside < outside - 30  # the dark malignant nodule stays under its outline


def test_region_of_interest_zooms_in():
    image = ultrasound_image(0, True, NODULE)
    _, full = preprocess(image, PreprocessConfig(size=64), [ELLIPSE])
    region = grow_box(mask_box(outline_mask(image.shape, [ELLIPSE])), image.shape, 0.1)
    _, crop = preprocess(image, PreprocessConfig(size=64), [ELLIPSE], region)
    assert (crop > 0).mean() > 3 * (full > 0).mean()


@pytest.mark.parametrize("method", ["median", "bilateral", "nlmeans"])
def test_despeckle_reduces_local_variance(method):
    image = ultrasound_image(3, False)
    config = PreprocessConfig(size=128, despeckle=method)
    smooth, _ = preprocess(image, config)
    rough, _ = preprocess(image, PreprocessConfig(size=128))
    assert np.abs(np.diff(smooth.astype(float), axis=1)).mean() < np.abs(np.diff(rough.astype(float), axis=1)).mean()


def test_clahe_and_unknown_despeckle():
    image = ultrasound_image(3, False)
    assert preprocess(image, PreprocessConfig(size=64, clahe=True))[0].dtype == np.uint8
    with pytest.raises(ValueError, match="unknown despeckle"):
        preprocess(image, PreprocessConfig(size=64, despeckle="wavelet"))


def test_letterbox_keeps_aspect_ratio_and_stretch_hides_it():
    out = fit_square(np.full((50, 100), 200, np.uint8), 64)
    assert out.shape == (64, 64)
    assert (out[:, 32] > 0).sum() == 32  # 100 -> 64 wide, 50 -> 32 tall, centred
    stretched = fit_square(np.full((50, 100), 200, np.uint8), 64, fit="stretch")
    assert stretched.shape == (64, 64) and (stretched == 200).all()  # no band tells the shape


def test_mask_marks_removes_saturated_specks():
    image = np.full((60, 60), 90, np.uint8)
    image[30:32, 10:40] = 255
    assert mask_marks(image).max() < 200


def test_mask_helpers():
    assert outline_mask((10, 10), []) is None
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 40:50] = 255
    assert mask_box(mask, 0.5) == (35, 30, 55, 70)
    assert mask_box(np.zeros((5, 5), np.uint8), 0.2) is None


def test_transform_output_and_augmentation_is_random_but_shape_stable():
    image = torch.from_numpy(preprocess(ultrasound_image(0, True), PreprocessConfig(size=64))[0]).unsqueeze(0)
    plain = build_transform(None, 3, 0.2, 0.2)
    out = plain(image)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    assert torch.allclose(out, plain(image))
    augmented = build_transform(AugmentConfig(), 1, 0.2, 0.2)
    first, second = augmented(image), augmented(image)
    assert first.shape == (1, 64, 64) and not torch.allclose(first, second)
    gamma_only = AugmentConfig(rotation=0.0, scale_min=1.0, scale_max=1.0, hflip=False, brightness=0.0, contrast=0.0,
                               speckle=0.0, gamma=0.5)
    bent = [build_transform(gamma_only, 1, 0.0, 1.0)(image) for _ in range(4)]
    plain_grey = build_transform(None, 1, 0.0, 1.0)(image)
    dark = plain_grey == 0
    assert all(torch.equal(b[dark], plain_grey[dark]) and b.max() <= 1.0 for b in bent)  # black stays black
    assert len({round(float(b.mean()), 4) for b in bent}) > 1  # a new curve each draw
    with pytest.raises(ThyronetError, match="augment.gamma"):
        AugmentConfig(gamma=-0.1)


def test_standardising_each_image_undoes_a_change_of_gain():
    image = torch.from_numpy(preprocess(ultrasound_image(0, True), PreprocessConfig(size=64))[0]).unsqueeze(0)
    darker = (image.float() * 0.6).round().to(torch.uint8)
    own, fixed = build_transform(None, 1, None, None), build_transform(None, 1, 0.2, 0.2)
    assert abs(float(own(image).mean())) < 1e-5 and float(own(image).std()) == pytest.approx(1.0, abs=1e-4)
    assert float((own(darker) - own(image)).abs().max()) < 0.05  # uint8 rounding only
    assert float((fixed(darker) - fixed(image)).abs().mean()) > 0.1


@pytest.mark.parametrize("fit", ["letterbox", "stretch"])
@pytest.mark.parametrize("region", [None, (180, 80, 340, 230)])
def test_geometry_carries_a_map_back_onto_the_frame(region, fit):
    image = ultrasound_image(0, True, NODULE)
    truth = outline_mask(image.shape, [ELLIPSE])
    _, mask, geometry = preprocess_with_geometry(image, PreprocessConfig(size=96, fit=fit), [ELLIPSE], region)
    back = geometry.to_frame(mask, interpolation=0)
    assert back.shape == image.shape
    overlap = ((back > 0) & (truth > 0)).sum() / ((back > 0) | (truth > 0)).sum()
    assert overlap > 0.9  # the round trip through a 96-px input loses only the edge pixels


def test_box_jitter_stays_inside_the_image_and_near_the_box():
    rng = np.random.default_rng(0)
    shape = (360, 560)
    for box in [(0, 0, 40, 30), (500, 320, 560, 360), (200, 100, 320, 200), (10, 10, 12, 12)]:
        for _ in range(200):
            x0, y0, x1, y1 = jitter_box(box, shape, 0.3, rng)
            assert 0 <= x0 < x1 <= 560 and 0 <= y0 < y1 <= 360 and x1 - x0 >= 2 and y1 - y0 >= 2
            grown = crop_region((x0, y0, x1, y1), shape, RegionConfig(margin=0.3))
            assert 0 <= grown[0] < grown[2] <= 560 and 0 <= grown[1] < grown[3] <= 360
    centre = [(b[0] + b[2]) / 2 for b in (jitter_box((200, 100, 320, 200), shape, 0.15, rng) for _ in range(500))]
    assert abs(np.mean(centre) - 260) < 3 and max(abs(c - 260) for c in centre) <= 0.15 * 120 + 1


def test_expert_box_takes_the_larger_view_of_a_dual_view_outline():
    small = tuple((60 + 10 * np.cos(t), 60 + 10 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 20))
    x0, y0, x1, y1 = expert_box((360, 560), [small, ELLIPSE])
    assert abs(x0 - 200) <= 2 and abs(x1 - 320) <= 2 and abs(y0 - 100) <= 2 and abs(y1 - 200) <= 2
    mask = outline_mask((360, 560), [small, ELLIPSE])
    assert (largest_component(mask) > 0).sum() < (mask > 0).sum()
    assert crop_region(None, (360, 560), RegionConfig()) is None


def test_parse_box_accepts_four_numbers_and_names_the_problem():
    assert parse_box("10,20,110,220") == (10, 20, 110, 220)
    for text in ("1,2,3", "a,b,c,d", "50,50,10,10"):
        with pytest.raises(ValueError, match="box"):
            parse_box(text)


def test_grow_box_clips_to_the_image():
    assert grow_box((0, 0, 10, 10), (50, 50), 0.5) == (0, 0, 15, 15)


def test_overlapping_outlines_of_one_nodule_do_not_cancel_out():
    mask = outline_mask((360, 560), [ELLIPSE, ELLIPSE])  # DDTI outlines some nodules twice
    assert (mask > 0).sum() == (outline_mask((360, 560), [ELLIPSE]) > 0).sum() > 9_000  # pi * 60 * 50
