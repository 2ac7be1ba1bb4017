"""Where the embedding pipeline's decoding stops scaling on a GPU box: JPEG decoding and the model's input
preparation (`Encoder.prepare_bytes`) on 1 and 16 threads, with torch's own threads and with one, and Pillow's
resize instead of torch's.

    python bench/gpu/decode_threads.py FOLDER_OF_JPEGS      # the photos are read 8 times over

Measured on an H200 machine (16 cores): h200-decode-threads.log beside this file; docs/performance.md#on-a-gpu.
"""
import sys, time, os
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
import numpy as np, torch
from PIL import Image
from leakcore import images
from leakcore.encoders import create_encoder
from leakcore.encoders.base import usable_cores
datas = [f.read_bytes() for f in sorted(Path(sys.argv[1] if len(sys.argv) > 1 else ".gpu/data").glob("*.jpg"))] * 8
enc = create_encoder("sscd-distilled", device="cpu", backend="torch")
size = enc.spec.input_size
def run(name, fn, workers):
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fn, datas[:64]))
        t = time.perf_counter(); list(pool.map(fn, datas)); dt = time.perf_counter() - t
    print(f"{name:40s} workers {workers:2d}: {len(datas)/dt:7.0f} img/s", flush=True)
dec = lambda d: images.decode(d, draft_size=(size, size)).image
pil = lambda d: np.asarray(dec(d).resize((size, size), Image.Resampling.BILINEAR))
print("torch threads", torch.get_num_threads(), "cores", usable_cores())
for w in (1, 16):
    run("decode only (PIL draft)", dec, w)
    run("prepare_bytes (torch resize)", enc.prepare_bytes, w)
    run("PIL decode + PIL resize", pil, w)
torch.set_num_threads(1)
for w in (1, 8, 16):
    run("prepare_bytes, torch 1 thread", enc.prepare_bytes, w)
