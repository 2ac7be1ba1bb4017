"""Perceptual and exact hashes as +-1/sqrt(b) vectors, so cosine = 1 - 2*hamming/b and search is shared."""
from __future__ import annotations

import hashlib

import imagehash
import numpy as np
from PIL import Image

from leakcore.encoders.registry import register_encoder
from leakcore.encoders.base import Encoder, EncoderSpec

_HASH_THRESHOLDS_FROM = (
    "bench/calibrate_defaults.py --defaults: the paper's transformation suite on hymenoptera (397 photos) and "
    "CIFAR-10 test; hard = the higher zero-false-positive point, soft = the higher of 0.1% FPR on photos and "
    "1% FPR on CIFAR-10 (phash: hamming <= 2 of 64 bits hard, <= 10 soft; dhash: <= 1 and <= 9)"
)


def bits_to_vector(bits: np.ndarray) -> np.ndarray:
    """{0,1}^b -> {-1,+1}/sqrt(b): unit vectors whose dot product is 1 - 2*hamming/b."""
    bits = np.asarray(bits, dtype=np.float32)
    return (2.0 * bits - 1.0) / np.sqrt(bits.shape[-1])


class HashEncoder(Encoder):
    """`prepare` computes the hash bits in worker threads; `embed_batch` only maps bits to vectors."""

    resample = None  # `prepare` hashes; there is nothing to decode on a GPU for

    def __init__(self, spec: EncoderSpec, device: str, fn):
        super().__init__(spec, "cpu", weights_id="no-weights")
        self._fn = fn

    def prepare(self, image: Image.Image) -> np.ndarray:
        return self._fn(image)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        return bits_to_vector(batch)


def _phash(image: Image.Image) -> np.ndarray:
    return imagehash.phash(image, hash_size=8).hash.reshape(-1).astype(np.uint8)


def _dhash(image: Image.Image) -> np.ndarray:
    return imagehash.dhash(image, hash_size=8).hash.reshape(-1).astype(np.uint8)


def _exact(image: Image.Image) -> np.ndarray:
    digest = hashlib.sha256(f"{image.width}x{image.height}".encode() + image.tobytes()).digest()
    return np.unpackbits(np.frombuffer(digest, dtype=np.uint8))


def _always() -> str | None:
    return None


def _register(name: str, fn, dim: int, hard: float, soft: float, description: str, thresholds_from: str) -> None:
    spec = EncoderSpec(
        name=name, family="hash", dim=dim, input_size=256, weights="none (no weights needed)",
        hard_threshold=hard, soft_threshold=soft, thresholds_from=thresholds_from, description=description,
    )

    @register_encoder(spec, check=_always)
    def build(spec: EncoderSpec, device: str, input_size: int | None = None) -> Encoder:
        return HashEncoder(spec.replace(input_size=input_size), device, fn)


_register("phash", _phash, 64, 0.9375, 0.6875, "64-bit DCT perceptual hash (imagehash.phash)", _HASH_THRESHOLDS_FROM)
_register("dhash", _dhash, 64, 0.96875, 0.71875, "64-bit difference hash (imagehash.dhash)", _HASH_THRESHOLDS_FROM)
_register(
    "exact", _exact, 256, 0.999, 0.999, "sha256 of the decoded pixels: identical pictures only",
    "by construction: similarity 1 only for identical decoded pixels; any other pair is ~0",
)
