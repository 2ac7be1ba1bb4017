"""The two ways past the thread pool's limit on a GPU box: `Encoder.prepare_bytes` in worker processes, and
JPEG decoding and the antialiased resize on the GPU (torchvision's nvJPEG `decode_jpeg(device="cuda")`).

    python bench/gpu/decode_processes_nvjpeg.py FOLDER_OF_JPEGS

Measured on an H200 machine (16 cores): h200-decode-processes-nvjpeg.log beside this file.
"""
import os
import sys
import time
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor
import numpy as np, torch
datas = [f.read_bytes() for f in sorted(Path(sys.argv[1] if len(sys.argv) > 1 else ".gpu/data").glob("*.jpg"))] * 8
_enc = None
def prep(d):
    global _enc
    if _enc is None:
        torch.set_num_threads(1)
        from leakcore.encoders import create_encoder
        _enc = create_encoder("sscd-distilled", device="cpu", backend="torch")
    return _enc.prepare_bytes(d)[0]
if __name__ == "__main__":
    import multiprocessing as mp
    ctx = mp.get_context("forkserver")
    for w in (8, 16):
        with ProcessPoolExecutor(w, mp_context=ctx) as pool:
            list(pool.map(prep, datas[:256], chunksize=8))
            t = time.perf_counter(); out = list(pool.map(prep, datas, chunksize=16)); dt = time.perf_counter() - t
        print(f"prepare_bytes in {w} processes: {len(datas)/dt:.0f} img/s", flush=True)
    import torchvision
    from torchvision.io import decode_jpeg
    import torch.nn.functional as F
    ts = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    for bs in (64, 256):
        def gpu():
            for s in range(0, len(ts), bs):
                imgs = decode_jpeg(ts[s:s + bs], device="cuda")
                batch = torch.stack([F.interpolate(i.unsqueeze(0).float(), size=(288, 288), mode="bilinear", antialias=True)[0] for i in imgs])
            torch.cuda.synchronize()
        gpu(); t = time.perf_counter(); gpu(); dt = time.perf_counter() - t
        print(f"nvjpeg decode + resize on the GPU, batches of {bs}: {len(ts)/dt:.0f} img/s", flush=True)
