"""The names a user picks from: the shipped models (each one's file in ``models/``, the run id that makes
it, one line on it), the inference windows, and every other choice of the inference settings.

Plain data with no imports, so the command line's choices, the config checks and the MONAI Label app name
the same models and windows as :mod:`bundle.inference.models` and :mod:`bundle.inference.inferers`, which
load and run them (and import MONAI, 8 s). A new model is one entry here.
"""

__all__ = [
    "ADAPTIVE_RULES",
    "COARSE_CONFIDENCE_FLOORS",
    "CONFIDENCE_FLOORS",
    "CPU_ONLY",
    "DESCRIPTIONS",
    "ENGINES",
    "KERNELS",
    "LOCALIZE_MODES",
    "MADE_BY",
    "MIRRORED_CONFIDENCE_FLOORS",
    "MODEL_FILES",
    "WINDOWS",
]

MODEL_FILES = {
    "snn": "model_snn_finetuned.pt",
    "snn_t2": "model_snn_t2.pt",
    "snn_converted": "model_snn_converted.pt",
    "ann": "model_ann.pt",
    "ann_int8": "model_ann_int8.pt",
}
# the run id of configs/train.json that makes each file (ann_int8: a script, from the ANN's file)
MADE_BY = {"snn": "finetune_snn", "snn_t2": "finetune_snn", "snn_converted": "convert", "ann": "train_ann",
           "ann_int8": "scripts/quantize_ann.py"}  # fmt: skip
DESCRIPTIONS = {
    "snn": "fine-tuned spiking U-Net at T=3 (default)",
    "snn_t2": "fine-tuned spiking U-Net for T=2: 3/4 of the energy of snn, a little less Dice",
    "snn_converted": "spiking U-Net converted from the ANN, not fine-tuned (T=16)",
    "ann": "the conventional U-Net the SNN was converted from",
    "ann_int8": "that U-Net quantised to INT8 (post-training, CPU only): the fair baseline for the SNN's energy",
}
# models that run on the CPU only (PyTorch's quantized kernels)
CPU_ONLY = ("ann_int8",)

# "fit": one window shrunk to the image (rounded up to the network's divisor); "fixed": roi_size tiles as before
WINDOWS = ("fit", "fixed")
# whole heads: "auto" decides per image from its field of view
LOCALIZE_MODES = ("auto", "on", "off")
# SNN timesteps per window: "off" always T; "stable" stops a window once its class map is stable
ADAPTIVE_RULES = ("off", "stable")
# where a batch's workers run: processes of this machine, or a Ray cluster (bundle.inference.cohort)
ENGINES = ("local", "ray")
# SNN neuron step: one compiled kernel (eager where compiling fails), or op by op
KERNELS = ("compiled", "eager")
# below this class-map confidence (bundle.inference.confidence) a mask is flagged: the 1st percentile of the model's
# confidences on the 42 unshifted validation cases (studies/robustness.py prints it; docs/RESULTS.md, "Scans from
# other sites"; from 0.11.2: ann docs/robustness/refine_ann.json, ann_int8 int8_unshifted_0.11.2.json; from 0.11.3:
# snn refine_snn_rate05.json, snn_t2 refine_snn_t2_lowlr.json). A --ckpt file takes its kind's floor.
CONFIDENCE_FLOORS = {"snn": 0.965, "snn_t2": 0.964, "snn_converted": 0.841, "ann": 0.862, "ann_int8": 0.857}
# the same for scans acquired at 2-3 mm (bundle.inference.confidence.floor_for): the 1st percentile over the same
# cases put through the iso_2mm and slices_3mm shifts (studies/robustness.py, summary "confidence_p1_coarse"; from
# 0.11.5: snn refine_snn_rate05.json, snn_t2 refine_snn_t2_lowlr.json, ann refine_ann.json). Models not measured
# there keep their floor above.
COARSE_CONFIDENCE_FLOORS = {"snn": 0.944, "snn_t2": 0.955, "ann": 0.808}
# the same, mirrored (mirror): averaging two passes lowers confidence at the borders, the SNNs' most (with the floors
# above, every mirrored SNN mask was flagged); studies/robustness.py --shifts none --mirror
# (docs/robustness/mirrored_unshifted.json; from 0.11.2: ann, ann_int8 ann_mirrored_0.11.2.json; from 0.11.3: snn
# snn_mirrored_0.11.3.json, snn_t2 snn_t2_mirrored_0.11.3.json)
MIRRORED_CONFIDENCE_FLOORS = {"snn": 0.869, "snn_t2": 0.877, "snn_converted": 0.820, "ann": 0.833, "ann_int8": 0.829}
