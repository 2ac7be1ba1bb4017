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
import leakcore.encoders.device_decode as device_decode
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
    #: how `prepare` resizes ("bilinear" or "bicubic", antialiased as Pillow does it), so that JPEGs can be
    #: decoded and resized on the GPU the same way (`device_decode`); None: only `prepare` can make the input
    resample: str | None = "bilinear"

    def __init__(self, spec: EncoderSpec, device: str = "cpu", weights_id: str = ""):
        self.spec = spec
        self.device = device
        self.weights_id = weights_id
        self.mirror = False  # embed the horizontal mirror image instead (query-time flips)
        self.device_decoding: bool | None = None  # None: decode JPEGs on the GPU where it can (`decodes_on_device`)
        self.device_decode_threads = 2  # threads that decode batches on the GPU, each on a stream of its own

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
        """(n, ...) stacked `prepare` outputs -> (n, dim) float32, L2-normalised. Where JPEGs are decoded on the
        GPU (`decodes_on_device`) the batch is a (n, size, size, 3) uint8 tensor already on the encoder's device."""
        raise NotImplementedError

    def decodes_on_device(self) -> bool:
        """Whether `encode` decodes JPEGs on the encoder's GPU: where nvJPEG is there and `prepare` is a plain
        resize; `device_decoding` set to True or False decides instead (tests, benchmarks)."""
        if self.device_decoding is not None:
            return self.device_decoding
        return self.resample is not None and device_decode.available(self.device)

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

        On a GPU (`decodes_on_device`) one more thread reads each JPEG's header, and decodes and resizes the
        next batches' JPEGs on the GPU, on a stream of its own, while the model embeds this one; the workers
        decode only what the GPU does not take.
        """
        pool = ThreadPoolExecutor(max_workers=max(1, workers or usable_cores()))
        try:
            if self.decodes_on_device():
                yield from self._encode_on_device(iter(datas), batch_size, prefetch, pool)
                return
            window = (prefetch + 1) * batch_size
            pending: deque[Future] = deque()
            for data in itertools.chain(datas, [_END]):
                if data is not _END:
                    pending.append(pool.submit(self.prepare_bytes, data))
                while len(pending) >= window or (data is _END and pending):
                    yield self._finish([pending.popleft().result() for _ in range(min(batch_size, len(pending)))])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # ---- decoding on the GPU (`device_decode`) ---------------------------------------------------------
    def _encode_on_device(self, datas: Iterator[bytes | None], batch_size: int, prefetch: int,
                          pool: ThreadPoolExecutor) -> Iterator[tuple[np.ndarray, list[str | None]]]:
        assembled: deque[Future] = deque()
        assembler = ThreadPoolExecutor(max_workers=max(1, self.device_decode_threads))
        streams = device_decode.ThreadStreams(self.device)
        try:
            while chunk := list(itertools.islice(datas, batch_size)):
                assembled.append(assembler.submit(self._assemble, chunk, streams, pool))
                if len(assembled) > max(prefetch, self.device_decode_threads):
                    yield self._embed_assembled(*assembled.popleft().result())
            while assembled:
                yield self._embed_assembled(*assembled.popleft().result())
        finally:
            assembler.shutdown(wait=True, cancel_futures=True)

    def _assemble(self, chunk: list[bytes | None], streams, pool: ThreadPoolExecutor):
        """One batch on the device: (inputs of the good rows, their positions, every row's reason).

        The JPEGs the GPU takes are decoded there; the rest by `prepare_bytes` in the pool, meanwhile."""
        stream = streams.get()
        jobs = {i: job for i, data in enumerate(chunk) if (job := device_decode.triage(data)) is not None}
        on_cpu = {i: pool.submit(self.prepare_bytes, data) for i, data in enumerate(chunk) if i not in jobs}
        decoded = None
        if jobs:
            try:
                with device_decode.on_stream(stream):
                    decoded = device_decode.decode_resized(list(jobs.values()), self.device, self.spec.input_size,
                                                           self.resample, self.mirror)
            except Exception as exc:  # noqa: BLE001 - nvJPEG refused one: the batch goes the CPU's way
                log.info("the GPU could not decode a batch of %d JPEGs (%s: %s); decoding them on the CPU",
                         len(jobs), type(exc).__name__, exc)
                on_cpu.update({i: pool.submit(self.prepare_bytes, chunk[i]) for i in jobs})
                jobs = {}
        prepared = {i: future.result() for i, future in on_cpu.items()}
        reasons = [None if i in jobs else prepared[i][1] for i in range(len(chunk))]
        good = [i for i in range(len(chunk)) if reasons[i] is None]
        cpu_good = [i for i in good if i not in jobs]
        if not cpu_good:
            return decoded, good, reasons
        import torch

        row = {i: r for r, i in enumerate(good)}
        with device_decode.on_stream(stream):
            batch = torch.empty((len(good), *prepared[cpu_good[0]][0].shape), dtype=torch.uint8, device=self.device)
            if jobs:
                batch[[row[i] for i in jobs]] = decoded
            batch[[row[i] for i in cpu_good]] = device_decode.to_device([prepared[i][0] for i in cpu_good],
                                                                       self.device)
        return batch, good, reasons

    def _embed_assembled(self, batch, good: list[int], reasons: list[str | None]) -> tuple[np.ndarray, list[str | None]]:
        out = np.zeros((len(reasons), self.spec.dim), dtype=np.float32)
        if good:
            out[good] = l2_normalise(np.asarray(self.embed_batch(batch), dtype=np.float32))
        return out, reasons

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
