"""Stage-3 (spiking fine-tuning) loss: segmentation loss, plus a firing-rate penalty and ANN distillation.

:func:`finetune_loss` is the one factory the config calls::

    loss = finetune_loss("dice", segmenter, rate_penalty=1e-2, distill_weight=0.5, temperature=2.0, ann=ann)
    trainer = SupervisedTrainer(..., network=loss.network, loss_function=loss)

* ``kind``: ``"dice"`` (MONAI ``DiceLoss``) or ``"dice_ce"`` (``DiceCELoss``), both ``to_onehot_y``,
  ``softmax``, ``batch=True``: with both weights 0 the loss is exactly that and ``loss.network`` is the
  segmenter itself (today's behaviour, nothing else runs).
* ``rate_penalty`` x the SNN's mean firing rate (|spikes| per hidden neuron per timestep) in that forward,
  counted with its surrogate gradient by the neurons (:meth:`SpikingSegmenter.spike_rate`); only the
  autograd (training) step counts, so inference is unchanged.
* ``distill_weight`` x ``temperature**2`` x KL(softmax(ANN / tau) || softmax(SNN / tau)), per voxel
  (summed over classes, averaged over voxels and batch; the tau**2 keeps the gradient's scale
  independent of tau, Hinton et al. 2015). MONAI's ``SupervisedTrainer`` hands the loss only
  ``(pred, label)``, so ``loss.network`` is then a :class:`WithTeacher` wrapper that, in training mode,
  also runs the frozen ANN on the same batch and keeps its logits for the loss. MONAI has no
  distillation loss or trainer (hence this module); the KL term is torch's ``F.kl_div``.

Train ``loss.network``; save, validate and optimise the segmenter (the wrapper adds no parameters and
no state-dict keys of its own to the segmenter's).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from bundle.errors import InputError
from bundle.options import one_of
from bundle.spiking.segmenter import SpikingSegmenter

__all__ = ["LOSS_KINDS", "FinetuneLoss", "WithTeacher", "distillation", "finetune_loss", "segmentation_loss"]

LOSS_KINDS = ("dice", "dice_ce")


def segmentation_loss(kind: str = "dice") -> nn.Module:
    """The stage-3 segmentation loss by name (what configs/train.json's ``finetune#loss`` chose inline)."""
    kind = one_of(kind, LOSS_KINDS, "finetune_loss")
    if kind == "dice":
        return DiceLoss(to_onehot_y=True, softmax=True, batch=True)
    return DiceCELoss(to_onehot_y=True, softmax=True, batch=True)


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``tau**2`` x KL(softmax(teacher / tau) || softmax(student / tau)), classes on dim 1, mean over the rest."""
    tau = float(temperature)
    log_student = F.log_softmax(student.float() / tau, dim=1)
    log_teacher = F.log_softmax(teacher.float() / tau, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(1)
    return kl.mean() * tau * tau


class WithTeacher(nn.Module):
    """``student(x)``; in training mode also the frozen ``teacher(x)``, kept as ``teacher_logits``.

    The teacher is a frozen copy (eval mode, no gradients; the caller's module, e.g. a config's shared
    ``network_def``, is left as it was) and stays in eval mode whatever ``train()`` says. Its parameters
    are not the student's: give the optimiser the student's (``param_groups(segmenter, ...)``).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.student = student
        self.teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        self.teacher_logits: torch.Tensor | None = None

    def train(self, mode: bool = True) -> WithTeacher:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.teacher_logits = self.teacher(x).detach()
        else:
            self.teacher_logits = None
        return self.student(x)


class FinetuneLoss(nn.Module):
    """Segmentation loss + ``rate_penalty`` x firing rate + ``distill_weight`` x distillation (see module doc).

    ``segmenter`` is the :class:`SpikingSegmenter` whose spikes are counted; ``student`` what is trained
    (the segmenter, or a wrapper of it such as ``MixedPrecision``): ``network`` is ``student``, or
    ``WithTeacher(student, ann)`` when distilling.

    ``terms`` holds the last call's parts (floats) for logging: ``segmentation``, ``firing_rate``,
    ``distillation``.
    """

    def __init__(
        self,
        kind: str,
        segmenter: SpikingSegmenter,
        rate_penalty: float = 0.0,
        distill_weight: float = 0.0,
        temperature: float = 1.0,
        ann: nn.Module | None = None,
        student: nn.Module | None = None,
    ):
        super().__init__()
        for name, value in (("finetune_rate_penalty", rate_penalty), ("finetune_distill_weight", distill_weight)):
            if not float(value) >= 0.0:
                raise InputError(f"{name}: {value!r} is not allowed; it must be >= 0.")
        if not float(temperature) > 0.0:
            raise InputError(f"finetune_distill_temperature: {temperature!r} is not allowed; it must be > 0.")
        if float(distill_weight) > 0 and ann is None:
            raise InputError("finetune_distill_weight > 0 needs the ANN (ann=...) to distil from.")
        self.segmentation = segmentation_loss(kind)
        self.rate_penalty, self.distill_weight, self.temperature = (
            float(rate_penalty),
            float(distill_weight),
            float(temperature),
        )
        # plain attributes, not submodules: the loss must not own (or move, or save) the networks
        self.__dict__["segmenter"] = segmenter
        student = segmenter if student is None else student
        self.__dict__["network"] = WithTeacher(student, ann) if self.distill_weight > 0 else student
        if self.rate_penalty > 0:
            segmenter.track_activity(True)
        self.terms: dict[str, float] = {}

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        loss = self.segmentation(pred, label)
        self.terms = {"segmentation": float(loss.detach())}
        if self.rate_penalty > 0:
            rate = self.segmenter.spike_rate()
            if rate is not None:  # None: a forward without autograd (nothing to penalise)
                loss = loss + self.rate_penalty * rate
                self.terms["firing_rate"] = float(rate.detach())
        if self.distill_weight > 0:
            teacher = self.network.teacher_logits
            if teacher is None:
                raise RuntimeError("distillation needs the teacher's logits: train loss.network, not the segmenter.")
            kd = distillation(pred, teacher, self.temperature)
            loss = loss + self.distill_weight * kd
            self.terms["distillation"] = float(kd.detach())
        return loss

    def extra_repr(self) -> str:
        return f"rate_penalty={self.rate_penalty}, distill_weight={self.distill_weight}, temperature={self.temperature}"


def finetune_loss(
    kind: str,
    segmenter: SpikingSegmenter,
    rate_penalty: float = 0.0,
    distill_weight: float = 0.0,
    temperature: float = 1.0,
    ann: nn.Module | None = None,
) -> FinetuneLoss:
    """The stage-3 loss (see the module docstring); train ``.network`` of what it returns.

    Both weights 0: exactly ``DiceLoss``/``DiceCELoss`` on the segmenter's output, ``.network`` is the
    segmenter, no spike counting and no ANN (``ann`` is not used and may be None).
    """
    seg = next((m for m in segmenter.modules() if isinstance(m, SpikingSegmenter)), None)  # may be wrapped
    if seg is None and float(rate_penalty) > 0:
        raise InputError("a firing-rate penalty needs a SpikingSegmenter (it counts the SNN's spikes).")
    return FinetuneLoss(
        kind, seg if seg is not None else segmenter, rate_penalty, distill_weight, temperature, ann, student=segmenter
    )
