"""Whole-head localisation: find both hippocampi in a whole-head T1 MRI and cut Task04-style crops.

The network only knows Task04 crops around one hippocampus. For a whole head, an affine registration
to the shipped MNI ICBM152 2009c template (``assets/``, 2 mm) maps CerebrA's left and right hippocampus
centroids into the image; around each, a 40x56x40 crop at 1 mm along the image's RAS axes goes to the
network, and the label crops are pasted back into the image's own grid. Offline: nothing is downloaded.

Modules: ``template`` (the assets), ``register`` (SimpleITK affine registration and its score),
``crops`` (boxes, resampling, pasting back), ``auto`` (crop or whole head, from the field of view),
``localize`` (the three together for one file), ``synthetic`` (test images with a known transform).
"""

from bundle.localization.auto import CROP_MAX_MM, HEAD_MIN_MM, FieldOfView, field_of_view
from bundle.localization.crops import CROP_SIZE, CropBox, crop_box, from_nifti, paste_back, resample_crop, to_nifti
from bundle.localization.localize import MIN_COVERAGE, Localization, localize, read_image
from bundle.localization.register import MIN_SIMILARITY, Registration, register, similarity
from bundle.localization.template import SIDES, Template, atlas_label, load_template

__all__ = [
    "CROP_MAX_MM",
    "CROP_SIZE",
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
    "to_nifti",
]
