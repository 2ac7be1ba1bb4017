"""The fused model of a CIFAR-10 workspace fitted again from empty without some of its features, then rescored on
the judged samples (bench/verify_cifar_rescore.py): does a feature hold the frontier back?

    cp -r .bench/verify-cost-with /tmp/cif          # a copy: the refit replaces the workspace's model
    python bench/verify_cifar_features.py /tmp/cif --drop ncc_detail detail_refined
    python bench/verify_cifar_rescore.py /tmp/cif --judged bench/verify/cifar-224-fit
    python bench/verify_cifar_rescore.py /tmp/cif --judged bench/verify/cifar-default

With no --drop it fits the model as a first `scan --verify` does (the stored suite and look-alikes are reused).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore import fused, verify  # noqa: E402
from leakcore.project import Workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", help="a CIFAR-10 workspace scanned with --verify (a copy: its model is replaced)")
    ap.add_argument("--drop", nargs="*", default=[], choices=verify.FEATURES, help="features the model goes without")
    args = ap.parse_args()
    verify.FEATURES = tuple(f for f in verify.FEATURES if f not in set(args.drop))  # what `fused.fit` reads
    fm = fused.fit(Workspace.open(args.workspace), use_decisions=False)
    print(f"features {', '.join(fm.features)}; soft {fm.soft:.4f}, hard {fm.hard:.4f}")


if __name__ == "__main__":
    main()
