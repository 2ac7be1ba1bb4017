"""Every registered encoder builds and embeds tiny images; hashes keep cosine = 1 - 2*hamming/b."""
import numpy as np
import pytest

from leakcore.encoders import create_encoder, encoder_names, get_spec, list_encoders
from leakcore.encoders.hashes import bits_to_vector

from conftest import jpeg_bytes, photo

# Encoders whose trained weights cannot be had offline are built with RANDOM weights here, and say so.
RANDOM_WEIGHTS = {"clip-vit-b32", "dinov2-vitb14", "resnet152"}


@pytest.mark.parametrize("name", encoder_names())
def test_encoder_builds_and_embeds_tiny_images(name):
    overrides = {"random_weights": True} if name in RANDOM_WEIGHTS else {}
    if get_spec(name).family not in ("hash", "open_clip"):  # ViT-B/32's position table fixes 224 px
        overrides["input_size"] = 112 if name == "dinov2-vitb14" else 64
    enc = create_encoder(name, device="cpu", **overrides)
    if name in RANDOM_WEIGHTS:
        assert "random" in enc.weights_id
    datas = [jpeg_bytes(photo(i)) for i in range(3)] + [b"not an image"]
    batches = list(enc.encode(datas, batch_size=2))
    vecs = np.concatenate([v for v, _ in batches])
    reasons = sum((r for _, r in batches), [])
    assert vecs.shape == (4, enc.spec.dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs[:3], axis=1), 1.0, atol=1e-4)
    assert reasons[:3] == [None, None, None] and reasons[3] == "not an image"
    assert not vecs[3].any()
    again = np.concatenate([v for v, _ in enc.encode(datas[:1])])
    np.testing.assert_allclose(again[0], vecs[0], atol=1e-4)


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(ValueError, match="valid encoders: .*sscd"):
        create_encoder("nope")


def test_list_encoders_says_why_not():
    rows = {r["name"]: r for r in list_encoders()}
    assert rows["phash"]["available"] and rows["sscd"]["available"]
    clip = rows["clip-vit-b32"]
    assert clip["hard"] == 0.98 and clip["soft"] == 0.95
    if not clip["available"]:
        assert "weights" in clip["why_not"]


def test_missing_weights_fail_at_once_naming_the_file(tmp_path):
    from leakcore.encoders import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="does not exist"):
        create_encoder("sscd", weights=str(tmp_path / "missing.onnx"))
    with pytest.raises(WeightsUnavailable, match="resnet152"):
        create_encoder("resnet152", weights=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("bits", [8, 64, 256])
def test_hash_vectors_cosine_is_one_minus_twice_hamming(bits):
    rng = np.random.default_rng(bits)
    a, b = rng.integers(0, 2, size=(2, 50, bits))
    cos = np.einsum("ij,ij->i", bits_to_vector(a), bits_to_vector(b))
    hamming = (a != b).sum(axis=1)
    np.testing.assert_allclose(cos, 1 - 2 * hamming / bits, atol=1e-6)


def test_phash_of_reencoded_copy_is_near_and_of_other_image_far():
    enc = create_encoder("phash")
    base = photo(7, (128, 96))
    v = np.concatenate([x for x, _ in enc.encode([jpeg_bytes(base, 95), jpeg_bytes(base, 40), jpeg_bytes(photo(8, (128, 96)))])])
    assert v[0] @ v[1] > 0.8 > v[0] @ v[2]


def test_exact_hash_matches_identical_pixels_only():
    enc = create_encoder("exact")
    from conftest import png_bytes

    base = photo(3)
    v = np.concatenate([x for x, _ in enc.encode([png_bytes(base), png_bytes(base), png_bytes(photo(4))])])
    assert v[0] @ v[1] == pytest.approx(1.0) and abs(v[0] @ v[2]) < 0.5


def test_resize_square_matches_pillow():
    """The torch resize stands in for Pillow's: within one grey level down, identical up (CIFAR's 32 px)."""
    from PIL import Image

    from leakcore.encoders.base import resize_square

    for size, target in (((500, 333), 288), ((333, 500), 224), ((32, 32), 224), ((288, 288), 288)):
        image = photo(size[0], size)
        ours = resize_square(image, target)
        pillow = np.asarray(image.resize((target, target), Image.Resampling.BILINEAR))
        assert ours.shape == (target, target, 3) and ours.dtype == np.uint8 and ours.flags.c_contiguous
        diff = np.abs(ours.astype(int) - pillow.astype(int))
        assert diff.max() <= (0 if size[0] <= target else 1)


def test_encode_keeps_order_across_workers_and_stops_when_closed():
    enc = create_encoder("exact", device="cpu")
    datas = [jpeg_bytes(photo(i, (40 + i % 7, 30))) for i in range(37)] + [None, b"", b"junk"]
    one_by_one = np.concatenate([enc.encode([d], batch_size=1, workers=1).__next__()[0] for d in datas])
    batches = list(enc.encode(datas, batch_size=4, workers=4, prefetch=3))
    assert [len(r) for _, r in batches] == [4] * 10
    np.testing.assert_array_equal(np.concatenate([v for v, _ in batches]), one_by_one)
    assert [r for _, r in batches][-1][1:] == ["missing", "empty file", "not an image"]

    seen = []
    real = enc.prepare_bytes

    def counted(data):
        seen.append(1)
        return real(data)

    enc.prepare_bytes = counted
    gen = enc.encode(iter(datas), batch_size=2, workers=1, prefetch=1)
    next(gen)
    gen.close()  # an interrupted scan: decoding runs a bounded window ahead and stops there
    assert len(seen) <= 6


def test_onnx_encoder_on_a_gpu_box_without_the_cuda_provider_says_it_runs_on_cpu(caplog):
    """Here torch sees no GPU either, so both GPU routes fail and the encoder says it runs on the CPU."""
    import onnxruntime as ort
    import torch

    if "CUDAExecutionProvider" in ort.get_available_providers() or torch.cuda.is_available():
        pytest.skip("this machine has a GPU route")
    with caplog.at_level("WARNING"):
        enc = create_encoder("sscd-distilled", device="cuda", input_size=64)
    assert enc.device == "cpu" and enc.backend == "onnxruntime"
    assert "requirements-gpu.txt" in caplog.text
    assert enc.embed_batch(np.zeros((1, 64, 64, 3), np.uint8)).shape == (1, 512)


def test_sscd_distilled_through_torch_equals_onnxruntime():
    """The torch conversion (the GPU route without onnxruntime's CUDA provider) gives the same vectors."""
    ref = create_encoder("sscd-distilled", device="cpu", input_size=96)
    conv = create_encoder("sscd-distilled", device="cpu", input_size=96, backend="torch")
    assert (ref.backend, conv.backend) == ("onnxruntime", "torch") and ref.fingerprint == conv.fingerprint
    batch = np.stack([np.asarray(photo(i, (96, 96))) for i in range(3)])
    a, b = ref.embed_batch(batch), conv.embed_batch(batch)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert not np.allclose(a[0], a[1], atol=1e-2)  # distinct images, distinct vectors: the comparison means something
    # onnxruntime's graph takes any size (the shortcut audit embeds a corner near its own size): at 64 px it embeds
    # 64 px inputs with the same model
    small = ref.at_size(64)
    assert ref.any_size and small.spec.input_size == 64 and small._session is ref._session
    assert small.encode_images([photo(0, (40, 30))]).shape == (1, 512)


def test_decoding_runs_while_the_model_embeds():
    """The model's first batch waits until a later batch is being decoded: a pipeline that decoded only
    between model calls would never get there (the wait times out and the test fails)."""
    import threading

    enc = create_encoder("exact", device="cpu")
    datas = [jpeg_bytes(photo(i)) for i in range(12)]
    later_batch_started = threading.Event()
    prepare, embed = enc.prepare_bytes, enc.embed_batch

    def watched_prepare(data):
        if data is datas[8]:  # an item of the third batch
            later_batch_started.set()
        return prepare(data)

    def waiting_embed(batch):
        overlapped.append(later_batch_started.wait(timeout=10))
        return embed(batch)

    overlapped: list[bool] = []
    enc.prepare_bytes, enc.embed_batch = watched_prepare, waiting_embed
    assert sum(len(r) for _, r in enc.encode(datas, batch_size=4, workers=2, prefetch=2)) == 12
    assert overlapped[0]


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript is deprecated in torch 2.14; users still have such exports
def test_user_torchscript_sscd_export_gets_imagenet_normalised_nchw(tmp_path):
    import torch

    from leakcore.encoders.base import IMAGENET_MEAN, IMAGENET_STD

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 512))
    path = tmp_path / "sscd_export.pt"
    torch.jit.script(net.eval()).save(str(path))
    enc = create_encoder("sscd", device="cpu", weights=str(path), input_size=32)
    assert enc.backend == "torchscript"
    batch = np.stack([np.asarray(photo(i, (32, 32))) for i in range(2)])
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        np.testing.assert_allclose(enc.embed_batch(batch), net(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["resnet152", "dinov2-vitb14"])
def test_a_checkpoint_of_another_model_is_refused_not_half_loaded(tmp_path, name):
    """Strict loading: a file whose layers do not match is an error, never a model left partly random."""
    import torch

    from leakcore.encoders import WeightsUnavailable

    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(WeightsUnavailable, match="is not a .* checkpoint"):
        create_encoder(name, weights=str(bad), device="cpu")
