"""Write a whole-head example MRI to try ``hippo-snn segment`` on, from the template the bundle ships.

The MNI ICBM152 2009c T1 (2 mm, ``bundle/localization/assets``) moved by a random rotation and shift,
resampled to 1.2 mm in DICOM-style LPS voxel order, with a bias field and noise: a stand-in for a scanner's
whole-head T1 (blurrier than a real 1 mm scan). Written as NIfTI and as NRRD.

    python scripts/make_whole_head_example.py runs/example/in
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle.localization import load_template  # noqa: E402
from bundle.localization.synthetic import make_case  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/example/in")
    out.mkdir(parents=True, exist_ok=True)
    case = make_case(load_template().image, np.random.default_rng(7), orientation="LPS", spacing_range=(1.2, 1.2),
                     max_rotation_deg=10, max_translation_mm=15)  # fmt: skip
    image = sitk.Cast(sitk.RescaleIntensity(case.image, 0, 1000), sitk.sitkInt16)
    sitk.WriteImage(image, str(out / "whole_head.nii.gz"))
    sitk.WriteImage(image, str(out / "whole_head_nrrd.nrrd"))
    print(f"wrote {out / 'whole_head.nii.gz'} and {out / 'whole_head_nrrd.nrrd'} ({image.GetSize()} voxels at 1.2 mm)")


if __name__ == "__main__":
    main()
