"""Encoder base: decoding, batching, bad-image skipping and progress live here; subclasses embed a batch."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from leakcore import images

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder is: defaults travel with the weights (open_clip's pretrained-config habit)."""

    name: str
    family: str
    dim: int
    input_size: int
    weights: str  # where the weights come from, in words a user can act on
    hard_threshold: float
    soft_threshold: float
    thresholds_from: str  # how the default thresholds were measured
    mean: tuple[float, float, float] | None = None  # None: the model takes uint8 pixels as they are
    std: tuple[float, float, float] | None = None
    description: str = ""

    def replace(self, **overrides) -> "EncoderSpec":
        """A copy with overrides applied; a `None` override keeps the default."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


class WeightsUnavailable(RuntimeError):
    """The encoder's weights are not on this machine; the message says what was looked for and how to supply it."""


class Encoder:
    """Turns images into L2-normalised float32 vectors. Subclasses implement `embed_batch` only
    (and may override `prepare` when they need something other than a square uint8 resize)."""

    spec: EncoderSpec

    def __init__(self, spec: EncoderSpec, device: str = "cpu", weights_id: str = ""):
        self.spec = spec
        self.device = device
        self.weights_id = weights_id
        self.mirror = False  # embed the horizontal mirror image instead (query-time flips)

    def mirrored(self) -> "Encoder":
        """A shallow copy that embeds mirror images; shares the model, caches under its own fingerprint."""
        import copy

        twin = copy.copy(self)
        twin.mirror = True
        return twin

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def fingerprint(self) -> str:
        """Identifies encoder + weights + preprocessing: embeddings cached under it are interchangeable."""
        text = f"{self.spec.name}|{self.spec.input_size}|{self.weights_id}|{type(self).__name__}"
        if self.mirror:
            text += "|mirror"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ---- hooks -------------------------------------------------------------------------------
    def prepare(self, image: Image.Image) -> np.ndarray:
        """One decoded RGB image -> the model's per-image input (runs in worker threads)."""
        size = self.spec.input_size
        return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """(n, ...) stacked `prepare` outputs -> (n, dim) float32, L2-normalised."""
        raise NotImplementedError

    # ---- template ----------------------------------------------------------------------------
    def _prepare_bytes(self, data: bytes | None) -> tuple[np.ndarray | None, str | None]:
        size = self.spec.input_size
        decoded = images.decode(data, draft_size=(size, size))
        if not decoded.ok:
            return None, decoded.reason
        image = decoded.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if self.mirror else decoded.image
        return self.prepare(image), None

    def encode(
        self,
        datas: Iterable[bytes | None],
        *,
        batch_size: int = 64,
        workers: int = 2,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[np.ndarray, list[str | None]]]:
        """Yield (vectors, reasons) per batch: rows of bad images are zero with their reason set.

        Decoding of the next batch runs in worker threads while the current one is embedded.
        """
        def prepare_chunk(chunk: Sequence[bytes | None]):
            return list(pool.map(self._prepare_bytes, chunk))

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, ThreadPoolExecutor(max_workers=1) as feeder:
            pending = None
            for chunk in _chunks(datas, batch_size):
                future = feeder.submit(prepare_chunk, chunk)
                if pending is not None:
                    yield self._finish(pending.result())
                    if progress:
                        progress(len(pending_chunk))
                pending, pending_chunk = future, chunk
            if pending is not None:
                yield self._finish(pending.result())
                if progress:
                    progress(len(pending_chunk))

    def _finish(self, prepared: list[tuple[np.ndarray | None, str | None]]) -> tuple[np.ndarray, list[str | None]]:
        reasons = [r for _, r in prepared]
        good = [i for i, (x, _) in enumerate(prepared) if x is not None]
        out = np.zeros((len(prepared), self.spec.dim), dtype=np.float32)
        if good:
            vecs = self.embed_batch(np.stack([prepared[i][0] for i in good]))
            out[good] = l2_normalise(np.asarray(vecs, dtype=np.float32))
        return out, reasons

    def encode_images(self, pil_images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """Embed already-decoded RGB images (calibration transforms); (n, dim) float32."""
        out = []
        for start in range(0, len(pil_images), batch_size):
            chunk = [self.prepare(im.convert("RGB")) for im in pil_images[start:start + batch_size]]
            out.append(l2_normalise(np.asarray(self.embed_batch(np.stack(chunk)), dtype=np.float32)))
        return np.concatenate(out) if out else np.zeros((0, self.spec.dim), np.float32)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def file_fingerprint(path) -> str:
    """Cheap identity of a weights file: name, size and the sha256 of its first and last MiB."""
    import os

    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read())
    h.update(str(size).encode())
    return h.hexdigest()[:16]
