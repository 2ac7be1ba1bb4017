"""Safe decoding: every awkward input yields RGB or a named reason, never an exception."""
import pytest

from leakcore import images


@pytest.mark.parametrize(
    "kind, expect",
    [
        ("ok_jpeg", None), ("cmyk", None), ("png16", None), ("palette_alpha", None), ("rgba", None),
        ("exif_rotated", None), ("gif_animated", None), ("gray", None),
        ("truncated", images.TRUNCATED), ("empty", images.EMPTY), ("text", images.NOT_IMAGE),
        ("huge_header", images.TOO_LARGE),
    ],
)
def test_decode_gives_rgb_or_a_reason(odd_images, kind, expect):
    result = images.decode(odd_images[kind].read_bytes())
    if expect is None:
        assert result.ok, result.reason
        assert result.image.mode == "RGB"
    else:
        assert not result.ok
        assert result.reason.startswith(expect), result.reason


def test_missing_bytes_are_reported_missing():
    assert images.decode(None).reason == images.MISSING


def test_exif_orientation_is_applied(odd_images):
    result = images.decode(odd_images["exif_rotated"].read_bytes())
    assert (result.image.width, result.image.height) == (48, 64)
    assert (result.width, result.height) == (48, 64)


def test_sixteen_bit_keeps_its_range(odd_images):
    img = images.decode(odd_images["png16"].read_bytes()).image
    lo, hi = img.convert("L").getextrema()
    assert lo < 10 and hi > 245


def test_transparent_pixels_become_white(odd_images):
    import numpy as np
    from PIL import Image

    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = np.asarray(images.decode(buf.getvalue()).image)
    assert (out == 255).all()


def test_decompression_limit_is_configurable(odd_images):
    data = odd_images["ok_jpeg"].read_bytes()
    assert images.decode(data, max_pixels=100).reason.startswith(images.TOO_LARGE)


def test_a_limit_above_pillows_own_is_honoured_and_a_refusal_says_how_to_raise_it(odd_images, monkeypatch):
    """Pillow warns over its MAX_IMAGE_PIXELS and refuses over twice that before our limit is checked: a new user's
    108 Mpx photo was refused under `--max-pixels 500000000`. Here Pillow's limit is made smaller than the 64 x 48
    fixture (3,072 pixels) to stand for that."""
    from PIL import Image

    data = odd_images["ok_jpeg"].read_bytes()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000)  # Pillow: a warning over 2,000, an error over 4,000
    assert images.decode(data, max_pixels=3_500).ok  # over Pillow's warning, under our limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    assert images.decode(data, max_pixels=10_000).ok  # over Pillow's error: Pillow's raised to our limit
    refused = images.decode(data, max_pixels=3_000).reason
    assert refused.startswith(images.TOO_LARGE) and "3,072 pixels" in refused and "--max-pixels" in refused, refused


def test_a_workspace_limit_is_the_default_wherever_its_images_are_read(tmp_path, odd_images, monkeypatch):
    """The scan, the verification and the pages decode with the default limit: a workspace's own (`add
    --max-pixels`) is that default once the workspace is open. DEFAULT_MAX_PIXELS and Pillow's limit are made
    smaller than the 3,072-pixel fixture here."""
    from PIL import Image

    from leakcore.project import Workspace

    monkeypatch.setattr(images, "DEFAULT_MAX_PIXELS", 1_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    data = odd_images["ok_jpeg"].read_bytes()
    assert images.decode(data).reason.startswith(images.TOO_LARGE)
    ws = Workspace.create(tmp_path / "ws")
    ws.set_settings(max_pixels=10_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # as in a new process, which only opens the workspace
    assert Workspace.open(ws.path).max_pixels == 10_000 and images.decode(data).ok


def test_draft_mode_keeps_original_size(odd_images):
    result = images.decode(odd_images["ok_jpeg"].read_bytes(), draft_size=(8, 8))
    assert (result.width, result.height) == (64, 48)
    assert result.image.width <= 64


@pytest.mark.parametrize("kind", ["ok_jpeg", "cmyk", "png16", "palette_alpha", "rgba", "exif_rotated", "gif_animated",
                                  "gray"])
def test_gray_decoding_is_the_luminance_of_the_colour_decoding(odd_images, kind):
    """What the verification reads: a JPEG's stored luma (its colour not decoded), every other mode through RGB as in
    colour (alpha on white, EXIF orientation applied): within a grey level or two of the colour image's luminance."""
    import numpy as np

    data = odd_images[kind].read_bytes()
    colour, gray = images.decode(data), images.decode(data, gray=True)
    assert gray.ok and gray.image.mode == "L"
    assert (gray.width, gray.height) == (colour.width, colour.height)
    diff = np.abs(np.asarray(gray.image, np.int16) - np.asarray(colour.image.convert("L"), np.int16))
    assert diff.mean() < 1.0 and diff.max() <= 24


def test_gray_decoding_names_bad_input_as_colour_does(odd_images):
    for kind in ("truncated", "empty", "text"):
        assert images.decode(odd_images[kind].read_bytes(), gray=True).reason == \
            images.decode(odd_images[kind].read_bytes()).reason
