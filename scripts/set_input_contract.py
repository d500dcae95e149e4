"""Record (or change) the intensity standardisation a checkpoint is served with, in the checkpoint itself.

Every inference path reads it from there (``bundle.networks.checkpoint.input_record``). A model trained with
one standardisation should keep it; changing it is a measured decision (``studies/robustness.py --standardization``
shows the Dice either way), e.g. the 0.9 weights, trained on the ``percentile`` scale and served with
``histogram`` from 2026-12-07 (docs/RESULTS.md, "Scans from other sites").

    .venv/bin/python scripts/set_input_contract.py models/model_ann.pt histogram [more checkpoints ...]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch

from bundle.data.standardization import STANDARDIZATIONS
from bundle.networks.checkpoint import input_record


def set_contract(path: Path, standardization: str) -> tuple[str, str]:
    """Write ``standardization`` into the checkpoint at ``path``; returns (old, new) standardisation."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    old = input_record(checkpoint)["standardization"]
    if "settings" in checkpoint:  # an SNN: {"state_dict", "settings"}
        checkpoint["settings"]["standardization"] = standardization
    else:  # an ANN: {"model": state dict} (or a bare state dict)
        checkpoint = checkpoint if "model" in checkpoint else {"model": checkpoint}
        checkpoint["input"] = {"standardization": standardization}
    partial = path.with_name(f".{path.name}.partial")
    torch.save(checkpoint, partial)
    partial.replace(path)
    return old, standardization


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("standardization", choices=STANDARDIZATIONS)
    args = parser.parse_args()
    for path in args.checkpoints:
        old, new = set_contract(path, args.standardization)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        print(f"{path}: {old} -> {new} (sha256 {digest}...)")


if __name__ == "__main__":
    main()
