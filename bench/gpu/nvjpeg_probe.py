"""Which JPEGs nvJPEG (torchvision's `decode_jpeg(device="cuda")`) decodes as Pillow does, and what it does with
bad ones: the facts `leakcore/encoders/device_decode.py` rests on (which files go the GPU's way).

    python bench/gpu/nvjpeg_probe.py

Measured on an H200 machine: the probe part of h200-device-decode-v1.log beside this file.
"""
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from leakcore import images  # noqa: E402

rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:375, 0:500] / 500
pic = np.stack([np.sin(xx * (4 + c)) + np.cos(yy * (3 + 2 * c)) for c in range(3)], -1)
pic = (255 * (pic - pic.min()) / np.ptp(pic) + rng.normal(0, 8, pic.shape)).clip(0, 255).astype(np.uint8)
img = Image.fromarray(pic)


def save(image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", **kw)
    return buf.getvalue()


base = save(img, quality=90)
corrupt = bytearray(base)
corrupt[len(base) // 3: len(base) // 3 + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
cases = {
    "baseline 4:2:0": base,
    "baseline 4:4:4": save(img, quality=90, subsampling=0),
    "grey": save(img.convert("L"), quality=90),
    "progressive": save(img, quality=90, progressive=True),
    "optimised Huffman": save(img, quality=90, optimize=True),
    "restart markers": save(img, quality=90, restart_marker_blocks=4) if "restart_marker_blocks" in Image.SAVE else base,
    "CMYK": save(img.convert("CMYK"), quality=90),
    "corrupt mid-stream": bytes(corrupt),
    "truncated": base[: len(base) // 2],
}
for name, data in cases.items():
    pillow = images.decode(data)
    try:
        out = decode_jpeg([torch.frombuffer(bytearray(data), dtype=torch.uint8)], mode=ImageReadMode.RGB,
                          device="cuda")[0]
        torch.cuda.synchronize()
        got = out.permute(1, 2, 0).cpu().numpy().astype(int)
        if pillow.ok:
            diff = np.abs(got - np.asarray(pillow.image).astype(int))
            print(f"{name:20s} nvJPEG decodes it: mean |diff| from Pillow {diff.mean():.2f}, max {diff.max()}")
        else:
            print(f"{name:20s} nvJPEG decodes it ({tuple(got.shape)}), Pillow says {pillow.reason!r}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name:20s} nvJPEG raises {type(exc).__name__}: {str(exc)[:100]!r}; Pillow: {pillow.reason!r}")
try:
    both = decode_jpeg([torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in (base, bytes(corrupt))],
                       mode=ImageReadMode.RGB, device="cuda")
    print("a batch of a good and a corrupt JPEG decodes")
except Exception as exc:  # noqa: BLE001
    print(f"a batch of a good and a corrupt JPEG raises {type(exc).__name__}")
