"""The teacher ensemble: frozen teachers whose averaged outputs are the student's only target.

MEAL V2 never shows the student a label. For each batch the teachers' probabilities are averaged,

    p_e(x) = 1/K * sum_t softmax(z_t(x)),

and that *mean of softmaxes* is the distillation target (it is not the softmax of the mean logits;
the two differ whenever the teachers disagree in confidence). The official code also keeps, separately,
the *mean of the teachers' logits*: that, not ``p_e``, is what its discriminator sees as "teacher
output". :class:`EnsembleOutput` carries both, plus the raw per-teacher logits.

Frozen means three things here, all enforced by :class:`TeacherEnsemble`:

- no gradient: every teacher parameter has ``requires_grad=False`` and the forward runs under
  ``torch.no_grad()``;
- eval mode always: ``train()`` is overridden, so calling ``.train()`` on the ensemble or on any module
  that holds it leaves the teachers (dropout, BatchNorm running statistics) in eval mode. The official
  code gets the same effect by keeping its teachers in a plain Python list that ``.train()`` never
  reaches; registering them as submodules instead lets ``.to(device)`` move them with everything else;
- never updated: with no gradients an optimiser step leaves them bit for bit unchanged, even if their
  parameters end up in its parameter list by accident.

Teachers may expect different input normalisation or resolution than the data loader produces (e.g. an
EfficientNet-B4 teacher at 380 px with Inception mean/std next to a ResNet student at 224 px with
ImageNet mean/std). :class:`InputAdapter` converts a batch per teacher, on the fly, on the device.

:class:`TeacherEnsemble` implements the *teacher-source protocol* the trainer relies on:
``targets(images, batch) -> EnsembleOutput``. A future cached soft-label source (FKD style) can
implement the same method, using ``batch`` (the whole batch tuple) to find sample indices or crop
parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, ModelError

__all__ = ["EnsembleOutput", "TeacherEnsemble", "InputAdapter", "declared_num_classes"]


@dataclass
class EnsembleOutput:
    """What the ensemble gives the trainer for one batch (all float32, no grad).

    probs: ``(N, C)`` mean of the teachers' softmax (at the ensemble's temperature): the KL target.
    logits: ``(N, C)`` mean of the teachers' raw logits: the discriminator's "teacher" input (official).
    teacher_logits: ``(K, N, C)`` each teacher's raw logits, for analysis (agreement, calibration...).
    """

    probs: torch.Tensor
    logits: torch.Tensor
    teacher_logits: torch.Tensor

    def to(self, *args: Any, **kwargs: Any) -> "EnsembleOutput":
        return EnsembleOutput(
            self.probs.to(*args, **kwargs), self.logits.to(*args, **kwargs), self.teacher_logits.to(*args, **kwargs)
        )


def _as_tuple(values: Any, name: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        return (float(values),)
    try:
        return tuple(float(v) for v in values)
    except TypeError as exc:
        raise ConfigError(f"{name} must be a number or a sequence of numbers, got {values!r}.") from exc


def _as_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) == 3:  # timm-style (C, H, W)
        size = size[1:]
    if len(size) != 2:
        raise ConfigError(f"An image size must be an int, (H, W) or (C, H, W), got {size!r}.")
    return size  # type: ignore[return-value]


class InputAdapter(nn.Module):
    """Re-normalise (and resize) a batch from the data's convention to a teacher's.

    The loader normalises images with the data (student) mean/std: ``x = (raw - src_mean) / src_std``.
    A teacher trained with ``dst_mean``/``dst_std`` needs ``(raw - dst_mean) / dst_std``, which is the
    per-channel affine map ``x * src_std / dst_std + (src_mean - dst_mean) / dst_std``. If ``dst_size``
    is given and differs from the batch's spatial size, the result is resized with antialiased bilinear
    interpolation. With equal mean/std and no resize the adapter returns its input unchanged.
    """

    def __init__(
        self,
        src_mean: Sequence[float],
        src_std: Sequence[float],
        dst_mean: Sequence[float],
        dst_std: Sequence[float],
        dst_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        src_mean_t, src_std_t = _as_tuple(src_mean, "src_mean"), _as_tuple(src_std, "src_std")
        dst_mean_t, dst_std_t = _as_tuple(dst_mean, "dst_mean"), _as_tuple(dst_std, "dst_std")
        lengths = {len(src_mean_t), len(src_std_t), len(dst_mean_t), len(dst_std_t)}
        if len(lengths) != 1:
            raise ModelError(
                f"The data normalisation has {len(src_mean_t)} channel(s) but the teacher expects "
                f"{len(dst_mean_t)}; use a teacher made for the same number of input channels as the data."
            )
        if any(s <= 0 for s in src_std_t + dst_std_t):
            raise ConfigError("Normalisation std values must be positive; check the data and teacher configs.")
        self.src_mean, self.src_std = src_mean_t, src_std_t
        self.dst_mean, self.dst_std = dst_mean_t, dst_std_t
        self.dst_size = _as_size(dst_size)
        self.same_normalisation = src_mean_t == dst_mean_t and src_std_t == dst_std_t
        scale = torch.tensor([s / d for s, d in zip(src_std_t, dst_std_t)]).view(1, -1, 1, 1)
        shift = torch.tensor([(m - dm) / d for m, dm, d in zip(src_mean_t, dst_mean_t, dst_std_t)]).view(1, -1, 1, 1)
        # Derived constants, not learned state: keep them out of state_dict (persistent=False) but let
        # .to(device) move them.
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    @property
    def is_identity(self) -> bool:
        """True when the adapter never changes a batch (same mean/std and no target size)."""
        return self.same_normalisation and self.dst_size is None

    @classmethod
    def from_configs(cls, data_cfg: Mapping[str, Any], teacher_cfg: Mapping[str, Any]) -> "InputAdapter":
        """Adapter from two timm data-config dicts (keys ``mean``, ``std``, ``input_size`` = (C, H, W)).

        A resize is added only when the teacher's ``input_size`` differs from the data's.
        """
        for which, cfg in (("data", data_cfg), ("teacher", teacher_cfg)):
            missing = [k for k in ("mean", "std", "input_size") if k not in cfg]
            if missing:
                raise ConfigError(
                    f"The {which} config lacks {', '.join(missing)}; pass a timm data config "
                    f"(timm.data.resolve_model_data_config(model))."
                )
        src_size, dst_size = _as_size(data_cfg["input_size"]), _as_size(teacher_cfg["input_size"])
        return cls(
            data_cfg["mean"],
            data_cfg["std"],
            teacher_cfg["mean"],
            teacher_cfg["std"],
            dst_size=None if dst_size == src_size else dst_size,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same_normalisation:
            if x.dim() != 4 or x.shape[1] != self.scale.shape[1]:
                raise ModelError(
                    f"InputAdapter expects a (N, {self.scale.shape[1]}, H, W) batch, got {tuple(x.shape)}; "
                    "check that the data and teacher configs describe the same channels."
                )
            x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        if self.dst_size is not None and tuple(x.shape[-2:]) != self.dst_size:
            x = F.interpolate(x, size=self.dst_size, mode="bilinear", align_corners=False, antialias=True)
        return x

    def extra_repr(self) -> str:
        return (
            f"src_mean={self.src_mean}, src_std={self.src_std}, dst_mean={self.dst_mean}, "
            f"dst_std={self.dst_std}, dst_size={self.dst_size}"
        )


def declared_num_classes(model: nn.Module) -> int | None:
    """The class count a model declares through an integer ``num_classes`` attribute, else None.

    timm models have this attribute; wrappers (e.g. a class-subset head) should set it to the number of
    logits they *return*. We do not guess from the last ``nn.Linear``: a wrapper that keeps 10 of 1000
    logits would be misread.
    """
    n = getattr(model, "num_classes", None)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


class TeacherEnsemble(nn.Module):
    """Frozen teachers, averaged: the MEAL V2 target.

    Args:
        teachers: the teacher models (at least one). They are registered as submodules, frozen
            (``requires_grad_(False)``) and put in eval mode, for good.
        input_adapters: optional, one per teacher (None entries = feed the batch as is).
        temperature: the softmax temperature for ``probs`` (MEAL V2: 1). ``logits`` are never scaled.
    """

    def __init__(
        self,
        teachers: Sequence[nn.Module],
        input_adapters: Sequence[InputAdapter | None] | None = None,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        teachers = list(teachers)
        if not teachers:
            raise ModelError(
                "A TeacherEnsemble needs at least one teacher; list teachers in the config or set teacher_preset."
            )
        if input_adapters is None:
            input_adapters = [None] * len(teachers)
        input_adapters = list(input_adapters)
        if len(input_adapters) != len(teachers):
            raise ModelError(
                f"Got {len(input_adapters)} input adapters for {len(teachers)} teachers; give one per teacher "
                "(None where no adaptation is needed)."
            )
        if not temperature > 0:
            raise ConfigError(f"The ensemble temperature must be positive, got {temperature!r}; use e.g. 1.0.")
        self.temperature = float(temperature)
        self.teachers = nn.ModuleList(teachers)
        self.adapters = nn.ModuleList(a if a is not None else nn.Identity() for a in input_adapters)
        self._observed_num_classes: int | None = None
        for t in self.teachers:
            t.requires_grad_(False)
        # Fail at construction (before any training) when the teachers declare different class counts.
        self._declared_num_classes()
        self.train(self.training)

    # -- frozen for good -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "TeacherEnsemble":
        # nn.Module.train() on any parent calls this method on its children, so overriding it here is
        # enough to keep teachers in eval mode however deep the ensemble sits in a model tree.
        super().train(mode)
        self.teachers.eval()
        return self

    # -- class count -----------------------------------------------------------------------------
    def _declared_num_classes(self) -> int | None:
        counts = [declared_num_classes(t) for t in self.teachers]
        known = {c for c in counts if c is not None}
        if len(known) > 1:
            described = ", ".join(
                f"teacher {i} ({type(t).__name__}): {c if c is not None else 'unknown'}"
                for i, (t, c) in enumerate(zip(self.teachers, counts))
            )
            raise ModelError(
                f"The teachers predict different numbers of classes ({described}); give every teacher the "
                "same classes (e.g. the same class subset) as the student."
            )
        return known.pop() if known else None

    @property
    def num_classes(self) -> int:
        """The teachers' common class count (from their ``num_classes`` or, failing that, a forward)."""
        n = self._declared_num_classes()
        if n is None:
            n = self._observed_num_classes
        if n is None:
            raise ModelError(
                "Cannot tell how many classes the teachers predict: give each teacher an integer num_classes "
                "attribute or run one batch through the ensemble first."
            )
        return n

    @property
    def num_teachers(self) -> int:
        return len(self.teachers)

    # -- forward ---------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each teacher's raw logits for batch ``x`` (after its input adapter), in teacher order."""
        outputs = [teacher(adapter(x)) for teacher, adapter in zip(self.teachers, self.adapters)]
        shapes = [tuple(o.shape) for o in outputs]
        if any(len(s) != 2 for s in shapes) or len(set(shapes)) != 1:
            described = ", ".join(f"teacher {i}: {s}" for i, s in enumerate(shapes))
            raise ModelError(
                f"The teachers returned logits of different shapes ({described}); every teacher must return "
                "(batch, classes) logits over the same classes."
            )
        self._observed_num_classes = shapes[0][1]
        return outputs

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> EnsembleOutput:
        """Average the teachers: mean of softmaxes (``probs``) and mean of logits (``logits``)."""
        teacher_logits = torch.stack([o.float() for o in self.teacher_outputs(x)])  # (K, N, C)
        # Mean of the teachers' probabilities -- NOT softmax(mean logits), which would let a confident
        # teacher dominate and is not what the paper or the official code uses for the KL target.
        probs = torch.softmax(teacher_logits / self.temperature, dim=-1).mean(dim=0)
        # Mean of raw logits: what the official code hands the discriminator as the teacher side.
        logits = teacher_logits.mean(dim=0)
        return EnsembleOutput(probs=probs, logits=logits, teacher_logits=teacher_logits)

    def targets(self, images: torch.Tensor, batch: Any = None) -> EnsembleOutput:
        """Teacher-source protocol: the targets for ``images``; ``batch`` (the whole batch tuple) is
        unused here but lets a cached soft-label source look up sample indices or crop parameters."""
        return self(images)

    def extra_repr(self) -> str:
        return f"num_teachers={len(self.teachers)}, temperature={self.temperature}"
