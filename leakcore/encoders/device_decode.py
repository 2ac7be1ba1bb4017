"""JPEG decoding and resizing on the encoder's GPU (nvJPEG, through torchvision), with Pillow for the rest.

On a GPU box the CPU cannot decode photos as fast as the model embeds them: Python's lock keeps a thread pool
under about 1,000 photos a second on 16 cores, against 6,000-18,000 for the models (bench/gpu/, docs/performance.md
"On a GPU"). nvJPEG decodes a batch of JPEGs on the GPU at the model's own pace. What it does not take goes the
CPU's way, `Encoder.prepare_bytes`, with its named reasons for bad files:

- anything that is not a complete JPEG (PNG, WebP..., no end-of-image marker: a truncated file, which nvJPEG would
  decode without a word, bench/gpu/nvjpeg_probe.py);
- JPEGs other than 8-bit Huffman-coded YCbCr or grey (CMYK, YCCK, components stored as RGB, arithmetic coding,
  12 bits), and images over the decompression-bomb limit;
- a whole batch that nvJPEG refuses (it returns no partial results), which is then decoded on the CPU.

The EXIF orientation is read from the header on the CPU and applied on the GPU, as `ImageOps.exif_transpose`
applies it; the resize is the encoder's own (`Encoder.resample`: antialiased bilinear or bicubic, as Pillow's).
Pillow decodes a large JPEG at a reduced DCT scale first (`draft`); the GPU decodes it whole and only resizes,
so the two paths' inputs differ by a grey level or two and their vectors agree to a cosine of about 0.999.
"""
from __future__ import annotations

import contextlib
import io
import logging
import threading
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from leakcore import images

log = logging.getLogger(__name__)

#: Whether progressive JPEGs are decoded on the GPU: nvJPEG decodes them as Pillow does, to 0.3 grey levels
#: on average (bench/gpu/nvjpeg_probe.py, h200-nvjpeg-probe.log).
PROGRESSIVE_ON_DEVICE = True
_ORIENTATION = 0x0112  # EXIF tag
_JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class Job:
    """A JPEG for the GPU: its bytes and its EXIF orientation (1-8; 1 is upright)."""

    data: bytes
    orientation: int = 1


def available(device: str) -> bool:
    """Whether `device` can decode JPEGs: a CUDA device and torchvision's image extension (nvJPEG)."""
    if not str(device).startswith("cuda"):
        return False
    try:
        import torch
        from torchvision.io import decode_jpeg  # noqa: F401

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no torchvision, or one built without its image extension
        return False


def triage(data: bytes | None, max_pixels: int = images.DEFAULT_MAX_PIXELS) -> Job | None:
    """A `Job` for a complete 8-bit Huffman JPEG in YCbCr or grey within the pixel limit; None: decode it with
    Pillow.

    Walks the JPEG's markers up to its frame header (`_header`) rather than opening it with Pillow: Pillow's
    parse costs about 30 us of Python a photo, as much as the GPU's whole decode, and holds the lock the other
    threads wait on.
    """
    if not data or data[:3] != b"\xff\xd8\xff" or not data.rstrip(b"\x00\r\n\t ").endswith(_JPEG_END):
        return None
    try:
        header = _header(data)
    except (IndexError, ValueError):  # a malformed header: Pillow's full decode will name it
        return None
    if header is None:
        return None
    width, height, progressive, orientation = header
    if width * height > max_pixels or width == 0 or height == 0 or (progressive and not PROGRESSIVE_ON_DEVICE):
        return None
    return Job(data, orientation if orientation in range(2, 9) else 1)


_SOF_HUFFMAN = {0xC0: False, 0xC1: False, 0xC2: True}  # baseline, extended, progressive (arithmetic: Pillow)
_RGB_IDS = (b"R", b"G", b"B")


def _header(data: bytes) -> tuple[int, int, bool, int] | None:
    """(width, height, progressive, EXIF orientation) from a JPEG's markers, or None where the GPU should not
    decode it (arithmetic coding, 12 bits, CMYK, components stored as RGB, no frame header, or the data ends
    before the first scan)."""
    pos, orientation, adobe_rgb, frame = 2, 1, False, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        body = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            orientation = _exif_orientation(body[6:])
        elif marker == 0xEE and body[:5] == b"Adobe" and len(body) >= 12:
            adobe_rgb = body[11] == 0  # Adobe's transform 0: the three components are R, G and B
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
            if marker not in _SOF_HUFFMAN or body[0] != 8:
                return None
            height, width, components = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
            if components not in (1, 3):
                return None
            stored_rgb = components == 3 and tuple(body[6 + 3 * c:7 + 3 * c] for c in range(3)) == _RGB_IDS
            frame = width, height, _SOF_HUFFMAN[marker], components, stored_rgb
        elif marker == 0xDA:  # the first scan: the tables, the frame and Adobe's marker are all before it
            if frame is None or pos + 2 + length > len(data) or frame[4] or (adobe_rgb and frame[3] == 3):
                return None
            return frame[0], frame[1], frame[2], orientation
        pos += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag of an EXIF block's first directory (1 where there is none)."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[ifd:ifd + 2], order)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if int.from_bytes(tiff[entry:entry + 2], order) == _ORIENTATION:
            return int.from_bytes(tiff[entry + 8:entry + 10], order)
    return 1


def orient(x, orientation: int):
    """(C, H, W) tensor turned as `ImageOps.exif_transpose` turns an image with this EXIF orientation."""
    if orientation == 2:
        return x.flip(-1)
    if orientation == 3:
        return x.flip(-1, -2)
    if orientation == 4:
        return x.flip(-2)
    if orientation == 5:
        return x.transpose(-1, -2)
    if orientation == 6:
        return x.transpose(-1, -2).flip(-1)
    if orientation == 7:
        return x.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return x.transpose(-1, -2).flip(-2)
    return x


def decode_resized(jobs: Sequence[Job], device: str, size: int, resample: str, mirror: bool = False):
    """(n, size, size, 3) uint8 tensor on `device`, each JPEG decoded, turned upright, mirrored where asked and
    resized with antialiasing. Raises whatever nvJPEG raises (it decodes all or none).

    Images of one shape are resized in one call: each call costs tens of microseconds of Python, and a batch of
    photos from one camera, or a whole collection of thumbnails, shares a few shapes.
    """
    import torch
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
        buffers = [torch.frombuffer(bytearray(job.data), dtype=torch.uint8) for job in jobs]
        decoded = decode_jpeg(buffers, mode=ImageReadMode.RGB, device=device)
    shapes: dict[tuple[int, int], list[int]] = {}
    for row, job in enumerate(jobs):
        decoded[row] = orient(decoded[row], job.orientation)
        shapes.setdefault(tuple(decoded[row].shape[-2:]), []).append(row)
    out = torch.empty((len(jobs), 3, size, size), dtype=torch.float32, device=device)
    for shape, rows in shapes.items():
        group = torch.stack([decoded[r] for r in rows]).float()
        if shape != (size, size):
            group = F.interpolate(group, size=(size, size), mode=resample, antialias=True, align_corners=False)
        out[rows] = group
    if mirror:
        out = out.flip(-1)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class ThreadStreams:
    """A CUDA stream for each decoding thread, so that threads decode while the model runs on the default
    stream, and each thread waits only for its own work (None off CUDA)."""

    def __init__(self, device: str):
        self.device = device
        self._local = threading.local()

    def get(self):
        if not str(self.device).startswith("cuda"):
            return None
        if not hasattr(self._local, "stream"):
            import torch

            self._local.stream = torch.cuda.Stream(device=self.device)
        return self._local.stream


@contextlib.contextmanager
def on_stream(stream):
    """Run the block's GPU work on `stream` and wait for it at the end (only this thread waits)."""
    if stream is None:
        yield
        return
    import torch

    with torch.cuda.stream(stream):
        yield
    stream.synchronize()


def to_device(arrays: Sequence[np.ndarray], device: str):
    """CPU-prepared (size, size, 3) uint8 arrays as one tensor on `device`."""
    import torch

    return torch.from_numpy(np.stack(arrays)).to(device)
