"""Decoding JPEGs on the encoder's device gives the CPU path's inputs, reasons and vectors, whatever the file.

The GPU path runs here on the CPU (torchvision decodes there too); on a GPU box the same tests run on CUDA.
"""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from leakcore import images
from leakcore.encoders import device_decode
from leakcore.encoders.base import Encoder, EncoderSpec

from conftest import jpeg_bytes, photo, png_bytes

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class PixelEncoder(Encoder):
    """The model's input itself, centred: a stand-in model that sees every pixel the real one would see."""

    def embed_batch(self, batch):
        x = batch if torch.is_tensor(batch) else torch.from_numpy(np.ascontiguousarray(batch))
        x = x.to(self.device).flatten(1).float()
        return (x - x.mean(1, keepdim=True)).cpu().numpy()


def encoder(device: str, size: int = 32, resample: str = "bilinear") -> PixelEncoder:
    spec = EncoderSpec(name="pixels", family="test", dim=size * size * 3, input_size=size, weights="none",
                       hard_threshold=None, soft_threshold=None, thresholds_from="test")
    enc = PixelEncoder(spec, device)
    enc.resample = resample
    return enc


def asymmetric(size=(60, 36)) -> Image.Image:
    """Blocks of colour whose every turn and mirror image differ a lot."""
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[: size[1] // 3, : size[0] // 4] = (255, 0, 0)
    img[size[1] // 2:, size[0] // 2:] = (0, 0, 255)
    img[:, -size[0] // 8:, 1] = 200
    return Image.fromarray(img)


def with_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def run(enc: Encoder, datas, batch_size=4):
    batches = list(enc.encode(datas, batch_size=batch_size, workers=2))
    return np.concatenate([v for v, _ in batches]), sum((r for _, r in batches), [])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchvision 0.29 deprecates its decoders
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_turns_the_image_as_pillow_does(orientation):
    data = with_orientation(asymmetric(), orientation)
    job = device_decode.triage(data)
    assert job is not None and job.orientation == orientation
    from torchvision.io import ImageReadMode, decode_jpeg

    raw = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    ours = device_decode.orient(raw, orientation).permute(1, 2, 0).numpy().astype(int)
    pillow = np.asarray(images.decode(data).image).astype(int)
    assert ours.shape == pillow.shape
    assert np.abs(ours - pillow).mean() < 2


def test_only_complete_8_bit_ycbcr_or_grey_jpegs_go_to_the_gpu(monkeypatch):
    rgb = jpeg_bytes(photo(1))

    def saved(image, **options) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", **options)
        return buf.getvalue()

    progressive = saved(photo(2), progressive=True)
    stored_rgb = saved(photo(4), keep_rgb=True)  # components R, G and B, and Adobe's marker saying so
    sof = stored_rgb.index(b"\xff\xc0")
    assert stored_rgb[sof + 10:sof + 17:3] == b"RGB"
    ids_only = stored_rgb.replace(b"\xff\xee", b"\xff\xef", 1)  # Adobe's marker made an unknown one
    adobe_only = bytearray(stored_rgb)
    adobe_only[sof + 10:sof + 17:3] = b"\x01\x02\x03"
    assert device_decode.triage(rgb) == device_decode.Job(rgb, 1)
    assert device_decode.triage(jpeg_bytes(photo(1).convert("L"))) is not None
    assert device_decode.triage(rgb + b"\x00\x00") is not None  # padding after the end marker
    assert device_decode.triage(progressive) is not None  # nvJPEG decodes them as Pillow does (nvjpeg_probe.py)
    for data in (None, b"", b"not an image", png_bytes(photo(1)), rgb[: len(rgb) // 2],
                 saved(photo(3).convert("CMYK")),  # nvJPEG refuses CMYK
                 ids_only, bytes(adobe_only),  # stored as R, G and B, not YCbCr: said either way
                 rgb[:2] + b"\xff\xda" + rgb[2:],  # a scan before the frame header
                 rgb[:600] + b"\xff\xd9"):  # cut off before its frame ends, an end marker appended
        assert device_decode.triage(data) is None
    assert device_decode.triage(rgb, max_pixels=100) is None
    monkeypatch.setattr(device_decode, "PROGRESSIVE_ON_DEVICE", False)
    assert device_decode.triage(progressive) is None


def grainy(seed: int, size=(640, 480)) -> Image.Image:
    """A photo with strong grain: resized without antialiasing, the grain stays and makes another picture."""
    img = np.asarray(photo(seed, size=size)).astype(int)
    img = img + np.random.default_rng(seed).integers(-80, 80, size=(size[1], size[0], 1))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def bad_and_odd_files() -> list:
    buf = io.BytesIO()
    photo(5, size=(70, 50)).save(buf, format="JPEG", progressive=True)
    progressive = buf.getvalue()
    buf = io.BytesIO()
    photo(6).convert("CMYK").save(buf, format="JPEG")
    cmyk = buf.getvalue()
    whole = jpeg_bytes(photo(7, size=(300, 200)))
    return [
        jpeg_bytes(photo(0, size=(64, 48))),
        jpeg_bytes(grainy(1), quality=95),  # Pillow reads this one at a reduced scale first
        jpeg_bytes(photo(2, size=(40, 90)).convert("L")),
        with_orientation(photo(3, size=(80, 50)), 6),
        None, b"", b"not an image", whole[: len(whole) // 2],
        png_bytes(photo(4)), progressive, cmyk,
        jpeg_bytes(photo(8, size=(32, 32))),  # already the input size: no resize
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mirror,resample", [(False, "bilinear"), (True, "bilinear"), (False, "bicubic")])
def test_decoding_on_the_device_gives_the_cpu_path_s_reasons_and_vectors(device, mirror, resample, caplog):
    datas = bad_and_odd_files()
    cpu = encoder(device, resample=resample)
    cpu.device_decoding = False
    gpu = encoder(device, resample=resample)
    gpu.device_decoding = True
    if mirror:
        cpu, gpu = cpu.mirrored(), gpu.mirrored()
    expected, expected_reasons = run(cpu, datas)
    with caplog.at_level("INFO", logger="leakcore.encoders.base"):
        got, reasons = run(gpu, datas)
    assert "could not decode" not in caplog.text  # every batch was decoded on the device, none fell back
    assert reasons == expected_reasons
    assert reasons[:4] == [None] * 4 and reasons[-3:] == [None] * 3
    ok = [i for i, r in enumerate(reasons) if r is None]
    cos = (got[ok] * expected[ok]).sum(1)
    assert cos.min() > 0.995, cos
    assert not got[[i for i, r in enumerate(reasons) if r is not None]].any()
    if mirror:  # the comparison can tell images apart: a photo and its mirror image are further apart
        plain, _ = run(encoder(device), datas)
        assert (got[ok] * plain[ok]).sum(1).min() < 0.99


@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_the_gpu_refuses_is_decoded_on_the_cpu(device, monkeypatch):
    datas = bad_and_odd_files()
    cpu = encoder(device)
    cpu.device_decoding = False
    expected, expected_reasons = run(cpu, datas)

    def refuse(*args, **kwargs):
        raise RuntimeError("nvjpeg: bitstream error")

    monkeypatch.setattr(device_decode, "decode_resized", refuse)
    gpu = encoder(device)
    gpu.device_decoding = True
    got, reasons = run(gpu, datas)
    assert reasons == expected_reasons
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_gpu_path_is_chosen_only_where_it_can_run():
    assert not encoder("cpu").decodes_on_device()
    assert not encoder("cuda:0").decodes_on_device() or device_decode.available("cuda:0")
    hashing = encoder("cuda:0")
    hashing.resample = None  # a `prepare` that is not a resize (hashes)
    assert not hashing.decodes_on_device()
