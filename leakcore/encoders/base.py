"""Encoder base: decoding, batching, bad-image skipping and progress live here; subclasses embed a batch."""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from leakcore import images
from leakcore.errors import WeightsUnavailable  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)
_END = object()  # marks the end of the input in `Encoder.encode`

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
    hard_threshold: float | None  # None: nobody measured them for this encoder; calibrate first
    soft_threshold: float | None
    thresholds_from: str  # how the default thresholds were measured (or why there are none)
    group_threshold: float | None = None  # "same source" (overlapping patches, neighbouring frames); None: not measured
    mean: tuple[float, float, float] | None = None  # None: the model takes uint8 pixels as they are
    std: tuple[float, float, float] | None = None
    description: str = ""

    @property
    def calibrated(self) -> bool:
        """True when the spec carries measured default thresholds."""
        return self.hard_threshold is not None and self.soft_threshold is not None

    def replace(self, **overrides) -> "EncoderSpec":
        """A copy with overrides applied; a `None` override keeps the default."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


class Encoder:
    """Turns images into L2-normalised float32 vectors. Subclasses implement `embed_batch` only
    (and may override `prepare` when they need something other than a square uint8 resize)."""

    spec: EncoderSpec
    any_size = False  # whether the model takes inputs of any size (`at_size`); a subclass that does says so

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

    def at_size(self, side: int) -> "Encoder":
        """A shallow copy that embeds at `side` x `side` pixels instead of the spec's input size, where the model
        takes any input size (`any_size`, a convolutional network); else this encoder. Shares the model."""
        import copy

        if not self.any_size or side == self.spec.input_size:
            return self
        twin = copy.copy(self)
        twin.spec = self.spec.replace(input_size=int(side))
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
        return resize_square(image, self.spec.input_size)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """(n, ...) stacked `prepare` outputs -> (n, dim) float32, L2-normalised."""
        raise NotImplementedError

    # ---- template ----------------------------------------------------------------------------
    def prepare_bytes(self, data: bytes | None) -> tuple[np.ndarray | None, str | None]:
        """Image file bytes -> (model input, None) or (None, why not): the per-image work of `encode`."""
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
        workers: int | None = None,
        prefetch: int = 2,
    ) -> Iterator[tuple[np.ndarray, list[str | None]]]:
        """Yield (vectors, reasons) per batch, in input order: rows of bad images are zero with their reason set.

        Every image is decoded in a pool of `workers` threads (default: one per core; Pillow and torch release
        the GIL) while up to `prefetch` batches ahead wait, so the model never waits on decoding it could
        have had, and the decoders never idle while the model runs. Closing the generator cancels the rest.
        """
        window = (prefetch + 1) * batch_size
        pending: deque[Future] = deque()
        pool = ThreadPoolExecutor(max_workers=max(1, workers or usable_cores()))
        try:
            for data in itertools.chain(datas, [_END]):
                if data is not _END:
                    pending.append(pool.submit(self.prepare_bytes, data))
                while len(pending) >= window or (data is _END and pending):
                    yield self._finish([pending.popleft().result() for _ in range(min(batch_size, len(pending)))])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _finish(self, prepared: list[tuple[np.ndarray | None, str | None]]) -> tuple[np.ndarray, list[str | None]]:
        reasons = [r for _, r in prepared]
        good = [i for i, (x, _) in enumerate(prepared) if x is not None]
        out = np.zeros((len(prepared), self.spec.dim), dtype=np.float32)
        if good:
            vecs = self.embed_batch(np.stack([prepared[i][0] for i in good]))
            out[good] = l2_normalise(np.asarray(vecs, dtype=np.float32))
        return out, reasons

    def encode_images(self, pil_images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """Embed already-decoded RGB images (calibration transforms), mirrored by a mirrored twin; (n, dim) float32."""
        out = []
        flip = (lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) if self.mirror else (lambda im: im)
        for start in range(0, len(pil_images), batch_size):
            chunk = [self.prepare(flip(im.convert("RGB"))) for im in pil_images[start:start + batch_size]]
            out.append(l2_normalise(np.asarray(self.embed_batch(np.stack(chunk)), dtype=np.float32)))
        return np.concatenate(out) if out else np.zeros((0, self.spec.dim), np.float32)


def usable_cores() -> int:
    """Cores this process may run on (a container's cpuset, not the host's count), at most OMP_NUM_THREADS when
    that is set: Ray sets it to the CPUs it gave an actor, and two actors that each take every core of a
    machine run slower together than one (bench/ray_scale.py measured 348 s vs 289 s on CIFAR-10)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 2
    try:
        return max(1, min(cores, int(os.environ.get("OMP_NUM_THREADS", cores))))
    except ValueError:
        return cores


def resize_square(image: Image.Image, size: int) -> np.ndarray:
    """RGB image -> (size, size, 3) uint8, antialiased bilinear as Pillow's `resize` does it.

    torch's vectorised uint8 kernel (channels-last input) matches Pillow to one grey level and costs a
    third of Pillow's time, which decides whether decoding keeps pace with a CPU model (bench/scan.py).
    """
    import torch
    import torch.nn.functional as F

    if image.size == (size, size):
        return np.array(image, dtype=np.uint8)
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)  # NCHW view, NHWC memory
    planes = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].numpy()
    out = np.empty((size, size, 3), dtype=np.uint8)
    for c in range(3):  # one plane at a time: 5x faster than numpy's generic transposing copy
        out[..., c] = planes[c]
    return out


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def file_fingerprint(path) -> str:
    """Cheap identity of a weights file: name, size and the sha256 of its first and last MiB."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read())
    h.update(str(size).encode())
    return h.hexdigest()[:16]
