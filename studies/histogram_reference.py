"""The reference of the histogram standardisation: where Task04's tissue landmarks lie on average.

Each training image's tissue percentiles (:data:`bundle.data.standardization.LANDMARKS`) are scaled so that
the first and last are 0 and 1, then averaged over the images. Prints the tuple to paste into
``REFERENCE`` and writes it, with the spread per landmark, to ``docs/histogram_reference.json``.

    .venv/bin/python studies/histogram_reference.py [--dataset_dir ../shared/data/Task04_Hippocampus]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
from monai import transforms as mt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bundle.data.datalist import prepare_datalists
from bundle.data.standardization import LANDMARKS, histogram_landmarks
from bundle.data.transforms import RAS_LABELS
from studies import dataset_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", default=str(dataset_dir()))
    parser.add_argument("--out", default="docs/histogram_reference.json")
    args = parser.parse_args()
    lists = prepare_datalists(args.dataset_dir, val_fraction=0.2, seed=0)
    load = mt.Compose(
        [
            mt.LoadImaged(keys="image", ensure_channel_first=True, image_only=True),
            mt.Orientationd(keys="image", axcodes="RAS", labels=RAS_LABELS),
            mt.Spacingd(keys="image", pixdim=(1.0, 1.0, 1.0)),
        ]
    )
    rows = []
    for item in lists["train"]:
        image = np.asarray(load({"image": item["image"]})["image"], dtype=np.float64)
        marks = histogram_landmarks(image)
        rows.append((marks - marks[0]) / (marks[-1] - marks[0]))
    rows = np.array(rows)
    mean, sd = rows.mean(0), rows.std(0)
    print(f"{len(rows)} training images; REFERENCE = {tuple(round(float(v), 4) for v in mean)}")
    Path(args.out).write_text(
        json.dumps(
            {
                "date": date.today().isoformat(),
                "command": "studies/histogram_reference.py",
                "images": len(rows),
                "landmarks": list(LANDMARKS),
                "reference": [round(float(v), 4) for v in mean],
                "sd": [round(float(v), 4) for v in sd],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
