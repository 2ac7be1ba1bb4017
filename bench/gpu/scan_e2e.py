"""A user's scan on a GPU box, end to end through the CLI, with JPEGs decoded on the GPU, against the same scan
with the GPU hidden (everything on the CPU): the same flags, the same unreadable files with the same reasons.

    python bench/gpu/scan_e2e.py FOLDER_OF_JPEGS

120 photos are training images, 40 are evaluation images, and 12 edited copies of training images join them
(crops, recompression, an EXIF turn, a PNG, a progressive JPEG), with a truncated file and a CMYK JPEG.
Measured on an H200 machine: h200-scan-e2e.log beside this file.
"""
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def build(src: Path, out: Path) -> None:
    files = sorted(src.glob("*.jpg"))
    (out / "train" / "x").mkdir(parents=True)
    (out / "val" / "x").mkdir(parents=True)
    for f in files[:120]:
        (out / "train" / "x" / f.name).write_bytes(f.read_bytes())
    for f in files[120:160]:
        (out / "val" / "x" / f.name).write_bytes(f.read_bytes())
    for n, f in enumerate(files[:12]):
        img = Image.open(f).convert("RGB")
        w, h = img.size
        target = out / "val" / "x" / f"copy{n:02d}.jpg"
        if n % 4 == 0:
            img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(target, quality=70)
        elif n % 4 == 1:
            exif = Image.Exif()
            exif[0x0112] = 6
            img.rotate(90, expand=True).save(target, quality=85, exif=exif.tobytes())  # upright once turned
        elif n % 4 == 2:
            img.save(target.with_suffix(".png"))
        else:
            img.resize((w // 2, h // 2)).save(target, quality=80, progressive=True)
    data = files[-1].read_bytes()
    (out / "val" / "x" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.open(files[-2]).convert("CMYK").save(out / "val" / "x" / "cmyk.jpg")


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else ".gpu/data")
    work = Path(tempfile.mkdtemp())
    build(src, work / "data")
    cli = [sys.executable, "-m", "leakcore.cli"]
    for device in ("cuda", "cpu"):
        ws = work / f"ws-{device}"
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="0" if device == "cuda" else "")
        subprocess.run(cli + ["add", str(ws), "--dataset", "d", "--source", str(work / "data")], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        t0 = time.perf_counter()
        run = subprocess.run(cli + ["scan", str(ws), "--encoder", "sscd-distilled"], capture_output=True, text=True,
                             env=env)
        print(f"== scan with {device}: rc {run.returncode}, {time.perf_counter() - t0:.1f} s")
        print("\n".join(line for line in run.stdout.splitlines() if line.strip())[-1500:])
        if run.returncode:
            print(run.stderr[-3000:])
    from leakcore import leakage
    from leakcore.project import Workspace

    tops, bad = {}, {}
    for device in ("cuda", "cpu"):
        ws = Workspace.open(work / f"ws-{device}")
        pairs = leakage.load_pairs(ws, raw=True)
        cross = pairs[~pairs["within"] & (pairs["rank"] == 1)].set_index("eval_item_id")
        tops[device] = cross
        items = ws.items()
        unreadable = items[items["status"] != "ok"]
        bad[device] = sorted(zip(unreadable["key"].astype(str), unreadable["reason"].astype(str)))
    print(f"evaluation images with a neighbour: GPU scan {len(tops['cuda'])}, CPU scan {len(tops['cpu'])}")
    a, b = tops["cuda"].align(tops["cpu"], join="inner", axis=0)
    same = (a["train_item_id"] == b["train_item_id"]).mean()
    diff = (a["similarity"] - b["similarity"]).abs()
    print(f"nearest training image the same for {same:.1%} of {len(a)} evaluation images; |similarity difference| "
          f"max {diff.max():.4f}, median {diff.median():.5f}")
    print("unreadable, GPU scan:", bad["cuda"])
    print("unreadable, CPU scan:", bad["cpu"])


if __name__ == "__main__":
    main()
