"""Safe decoding: bytes in, an RGB image or a named reason out; nothing here raises on bad input."""
from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

#: Default decompression-bomb limit (pixels). Pillow's own default is ~89 Mpx; we allow larger photos.
DEFAULT_MAX_PIXELS = 178_956_970
MAX_PIXELS_HINT = "leakcore add WS --dataset NAME --source ROOT --max-pixels N allows larger images"

# Reasons an item can be unreadable; stored in items.parquet and shown to the user.
MISSING = "missing"
EMPTY = "empty file"
NOT_IMAGE = "not an image"
TRUNCATED = "truncated"
TOO_LARGE = "too large"
OUTSIDE_ROOT = "outside dataset root"
UNREADABLE = "unreadable"
NO_PIXELS = "no pixels (embeddings only)"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class Decoded:
    """Result of decoding: `image` is RGB (L where asked for `gray`) when `reason` is None."""

    image: Image.Image | None
    reason: str | None = None
    width: int = 0
    height: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; alpha is composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if mode == "I" and arr.max() <= 65535:
            hi = 65535.0 if arr.max() > 255 else 255.0
        arr8 = np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def allow(max_pixels: int | None) -> None:
    """Let Pillow open images of up to `max_pixels` (a workspace's limit, `leakcore add --max-pixels`): Pillow
    refuses an image over twice its own MAX_IMAGE_PIXELS inside `Image.open`, before `decode`'s own check runs (a
    108 Mpx photo was refused under a limit of 500 Mpx). Only ever raised, never lowered: one process may open
    several workspaces, and each one's `decode` calls still check their own limit."""
    ceiling = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None and ceiling is not None and max_pixels > 2 * ceiling:
        Image.MAX_IMAGE_PIXELS = -(-int(max_pixels) // 2)


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return (f"{TOO_LARGE}: {width}x{height} is {width * height:,} pixels, over the limit of {max_pixels:,} "
            f"({MAX_PIXELS_HINT})")


def decode(
    data: bytes | None,
    *,
    max_pixels: int | None = None,
    draft_size: tuple[int, int] | None = None,
    gray: bool = False,
) -> Decoded:
    """Decode image bytes into RGB with EXIF orientation applied, or say why not.

    `draft_size` lets JPEG decode at a reduced scale (never smaller than asked) when that is all
    the caller needs; width and height are always the original's. With `gray` the image is its luminance (mode L)
    instead, a JPEG's read from its stored luma without decoding its colour (a third less time: what the
    verification's evidence reads, which is luminance only). `max_pixels` is the decompression-bomb limit: by default
    the larger of DEFAULT_MAX_PIXELS and what `allow` let Pillow open (a workspace's own limit, once it is open).
    """
    if max_pixels is None:
        ceiling = Image.MAX_IMAGE_PIXELS
        max_pixels = DEFAULT_MAX_PIXELS if ceiling is None else max(DEFAULT_MAX_PIXELS, 2 * ceiling)
    allow(max_pixels)
    if data is None:
        return Decoded(None, MISSING)
    if len(data) == 0:
        return Decoded(None, EMPTY)
    try:
        with warnings.catch_warnings():
            # the limit is `max_pixels`, checked here: Pillow's warning at half its error's size is not an error
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                return Decoded(None, _too_large(width, height, max_pixels), width, height)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            if img.format == "JPEG" and (draft_size is not None or gray):
                img.draft("L" if gray else "RGB", draft_size)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # in place: the default returns a full copy even when upright
            rgb = img if gray and img.mode == "L" else _to_rgb(img)
            if gray and rgb.mode != "L":
                rgb = rgb.convert("L")  # other modes through RGB, as in colour (alpha composited on white)
            rgb.load()
    except UnidentifiedImageError:
        return Decoded(None, NOT_IMAGE)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Decoded(None, f"{TOO_LARGE}: {exc} ({MAX_PIXELS_HINT})")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text.lower() or isinstance(exc, EOFError) or "broken data stream" in text.lower():
            # Pillow's "image file is truncated (0 bytes not processed)" read to a new user as if nothing were wrong
            said = "the file ends before its image data does" if "image file is truncated" in text else text
            return Decoded(None, f"{TRUNCATED}: {said}")
        return Decoded(None, f"{UNREADABLE}: {text}")
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not crash a scan; keep the reason
        log.warning("unexpected decoder failure: %r", exc)
        return Decoded(None, f"{UNREADABLE}: {type(exc).__name__}: {exc}")
    # Orientation may have swapped the sides; report the displayed size.
    return Decoded(rgb, None, *(_display_size(width, height, rgb)))


def _display_size(width: int, height: int, rgb: Image.Image) -> tuple[int, int]:
    """Original size in display orientation (draft decoding shrinks `rgb`, so use its aspect only)."""
    swapped = (rgb.width > rgb.height) != (width > height) and width != height
    return (height, width) if swapped else (width, height)



_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL, _BODY_SERIAL, _MAKE, _MODEL, _DATETIME = 0x9003, 0xA431, 0x010F, 0x0110, 0x0132


_UNSET_EXIF_TIME = re.compile(r"[0: ]*")  # "0000:00:00 00:00:00" or blanks: a camera whose clock was never set


def _exif_time(value) -> str | None:
    """An EXIF date as written, or None where the camera wrote none (empty, all zeros or blanks); any other text is
    kept, so that a real unparseable date is still reported."""
    text = str(value).strip("\x00 ") if value else ""
    return None if _UNSET_EXIF_TIME.fullmatch(text) else text


def exif_facts(data: bytes | None) -> dict:
    """When and with which camera a photo was taken, from its EXIF (header only, no pixel decoding):
    {"exif_time": "YYYY:MM:DD HH:MM:SS" | None, "camera": "make model #serial" | None}."""
    out = {"exif_time": None, "camera": None}
    if not data:
        return out
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the header only: no pixels are read
            with Image.open(io.BytesIO(data)) as img:
                exif = img.getexif()
                if not exif:
                    return out
                sub = exif.get_ifd(_EXIF_IFD)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError):
        return out
    when = _exif_time(sub.get(_DATETIME_ORIGINAL)) or _exif_time(exif.get(_DATETIME))
    serial = sub.get(_BODY_SERIAL)
    maker = " ".join(str(exif.get(t, "")).strip("\x00 ") for t in (_MAKE, _MODEL)).strip()
    out["exif_time"] = when
    if serial or maker:
        out["camera"] = (maker + (f" #{str(serial).strip()}" if serial else "")).strip() or None
    return out
