"""Whole-head localisation: find both hippocampi in a whole-head T1 MRI and cut Task04-style crops.

The network only knows Task04 crops around one hippocampus. For a whole head, an affine registration
to the shipped MNI ICBM152 2009c template (``assets/``, 2 mm) maps CerebrA's left and right hippocampus
centroids into the image; around each, a Task04-sized 34x48x34 crop at 1 mm in Task04's mean pose goes
to the network, and the label crops are pasted back into the image's own grid. Offline: nothing is downloaded.

Modules: ``template`` (the assets), ``registration`` (SimpleITK affine registration and its score),
``crops`` (boxes, resampling, pasting back), ``auto`` (crop or whole head, from the field of view),
``localize`` (the three together for one file), ``synthetic`` (test images with a known transform).
"""

from bundle.localization.auto import CROP_MAX_MM, HEAD_MIN_MM, FieldOfView, field_of_view
from bundle.localization.crops import (
    CROP_SIZE,
    FRAMES,
    CropBox,
    crop_box,
    from_nifti,
    paste_back,
    resample_crop,
    template_axes,
    to_nifti,
)
from bundle.localization.localize import (
    COARSEST_MEASURED_MM,
    MIN_COVERAGE,
    Localization,
    coarser_than_measured,
    localize,
    read_image,
)
from bundle.localization.registration import GOOD_SIMILARITY, MIN_SIMILARITY, Registration, register, similarity
from bundle.localization.template import SIDES, Template, atlas_label, load_template

__all__ = [
    "COARSEST_MEASURED_MM",
    "CROP_MAX_MM",
    "CROP_SIZE",
    "FRAMES",
    "GOOD_SIMILARITY",
    "HEAD_MIN_MM",
    "MIN_COVERAGE",
    "MIN_SIMILARITY",
    "SIDES",
    "CropBox",
    "FieldOfView",
    "Localization",
    "Registration",
    "Template",
    "atlas_label",
    "coarser_than_measured",
    "crop_box",
    "field_of_view",
    "from_nifti",
    "load_template",
    "localize",
    "paste_back",
    "read_image",
    "register",
    "resample_crop",
    "similarity",
    "template_axes",
    "to_nifti",
]
