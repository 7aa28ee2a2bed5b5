import numpy as np
import pytest

from loupe.inference.card import CardError, InputSpec
from loupe.inference.preprocess import display_rgb, prepare, to_uint8_window
from loupe.sources.base import Frame


def test_normalisation_and_padding_follow_the_card():
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[..., 0] = 255
    rgb[..., 1] = 51
    spec = InputSpec(color="RGB", scale=1 / 255, mean=(0.5, 0.2, 0.0), std=(0.5, 0.1, 1.0), size_multiple=4)
    x, geo = prepare(Frame(rgb, 0, 0.0), spec)
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32
    assert geo.frame_hw == (5, 6) and geo.input_hw == (8, 8)
    np.testing.assert_allclose(x[0, 0, :5, :6], (1.0 - 0.5) / 0.5, atol=1e-6)
    np.testing.assert_allclose(x[0, 1, :5, :6], (0.2 - 0.2) / 0.1, atol=1e-5)
    np.testing.assert_allclose(x[0, 2, :5, :6], 0.0, atol=1e-6)
    # edge-replicated padding, so the model sees no black border
    np.testing.assert_allclose(x[0, 0, 7, 7], x[0, 0, 4, 5])
    assert geo.crop_output((2, 2)) == (2, 2)


def test_bgr_models_get_bgr():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200
    x, _ = prepare(Frame(rgb, 0, 0.0), InputSpec(color="BGR", scale=1.0))
    assert x[0, 2].max() == 200 and x[0, 0].max() == 0


def test_dicom_frame_feeds_rgb_model_as_its_window():
    hu = np.array([[-1000.0, 40.0], [240.0, 3000.0]], np.float32)
    f = Frame(hu, 0, 0.0, {"window_center": 40.0, "window_width": 400.0, "modality": "CT"})
    rgb = display_rgb(f)
    assert rgb.shape == (2, 2, 3)
    assert rgb[0, 0, 0] == 0 and rgb[1, 1, 0] == 255 and abs(int(rgb[0, 1, 0]) - 128) <= 1
    x, _ = prepare(f, InputSpec(scale=1 / 255))
    np.testing.assert_allclose(x[0, :, 1, 1], 1.0)
    # unless the card asks for raw values (HU)
    xr, _ = prepare(f, InputSpec(color="GRAY", scale=1.0, mean=(0.0,), std=(1.0,), raw_values=True))
    np.testing.assert_array_equal(xr[0, 0], hu)


def test_window_clips():
    out = to_uint8_window(np.array([-5.0, 0.0, 5.0, 10.0, 50.0]), 0.0, 10.0)
    assert out.tolist() == [0, 0, 128, 255, 255]


def test_fixed_size_resizes():
    x, geo = prepare(Frame(np.zeros((100, 50, 3), np.uint8), 0, 0.0), InputSpec(fixed_size=(32, 48)))
    assert x.shape == (1, 3, 32, 48) and geo.mode == "resize"


def test_card_window_not_display_window_reaches_the_model():
    hu = np.array([[-160.0, 40.0, 240.0]], np.float32)
    f = Frame(hu, 0, 0.0, {"window_center": 40.0, "window_width": 400.0, "modality": "CT"})
    # the card states a brain window 50/100 (0..100 HU): -160 and 240 clip, 40 HU -> 102
    x, _ = prepare(f, InputSpec(scale=1 / 255, window=(50.0, 100.0)))
    np.testing.assert_allclose(x[0, 0, 0], [0.0, 102 / 255, 1.0], atol=1e-6)
    x_file, _ = prepare(f, InputSpec(scale=1 / 255))  # no card window: the file's window
    np.testing.assert_allclose(x_file[0, 0, 0], [0.0, 128 / 255, 1.0], atol=1e-6)


def test_letterbox_fits_centres_and_maps_back():
    """A 100 x 200 frame letterboxed into 64 x 64: scaled by 0.32 to 32 x 64, 16 rows of pad value
    above and below; a point of the input maps back to the frame pixel it came from."""
    spec = InputSpec(fixed_size=(64, 64), letterbox=True, pad_value=114, scale=1.0)
    pix = np.zeros((100, 200, 3), np.uint8)
    pix[:, 100:] = 255
    x, geo = prepare(Frame(pix, 0, 0.0), spec)
    assert x.shape == (1, 3, 64, 64) and geo.mode == "letterbox"
    assert geo.content_hw == (32, 64) and geo.offset == (16, 0) and geo.gain == pytest.approx(0.32)
    assert np.all(x[0, :, :16] == 114) and np.all(x[0, :, 48:] == 114)
    assert np.all(x[0, :, 16:48, :30] == 0) and np.all(x[0, :, 16:48, 34:] == 255)
    pts = geo.to_frame(np.array([[0, 16, 64, 48], [32, 32, 32, 32]], np.float32))
    np.testing.assert_allclose(pts[0], [0, 0, 200, 100], atol=1e-4)
    np.testing.assert_allclose(pts[1], [100, 50, 100, 50], atol=1e-4)
    # a 16 x 16 output map over the input: rows 4..11 cover the frame
    assert geo.crop_map(np.zeros((2, 16, 16))).shape == (2, 8, 16)
    # portrait: padded left and right
    x, geo = prepare(Frame(np.zeros((90, 30, 3), np.uint8), 0, 0.0), spec)
    assert geo.content_hw == (64, 21) and geo.offset == (0, 21)
    np.testing.assert_allclose(geo.to_frame(np.array([21.0, 64.0]))[:], [0.0, 90.0], atol=1e-4)


def test_letterbox_needs_a_fixed_size():
    with pytest.raises(CardError, match="letterbox needs fixed_size"):
        InputSpec(letterbox=True)
    assert InputSpec.from_dict({"fixed_size": [32, 32], "letterbox": True, "pad_value": 0}).pad_value == 0.0


def test_center_crop_covers_and_cuts_the_centre():
    spec = InputSpec(fixed_size=(32, 32), center_crop=True, scale=1.0)
    pix = np.zeros((64, 128, 3), np.uint8)
    pix[:, 48:80] = 200  # a centred band 32 wide: after scaling by 0.5 it is 16 wide in the middle
    x, geo = prepare(Frame(pix, 0, 0.0), spec)
    assert x.shape == (1, 3, 32, 32) and geo.mode == "center_crop" and geo.offset == (0, -16)
    assert np.all(x[0, :, :, 8:24] == 200) and np.all(x[0, :, :, :7] == 0)
    np.testing.assert_allclose(geo.to_frame(np.array([0.0, 0.0, 32.0, 32.0])), [32, 0, 96, 64], atol=1e-4)
    with pytest.raises(CardError, match="exclude"):
        InputSpec(fixed_size=(8, 8), center_crop=True, letterbox=True)
