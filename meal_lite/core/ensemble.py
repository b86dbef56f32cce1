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
- never updated: with no gradient (and any stale one from the teacher's own training cleared at
  construction) an optimiser step leaves them bit for bit unchanged, even if their parameters end up
  in its parameter list by accident.

Teachers may expect different input normalisation or resolution than the data loader produces (e.g. an
EfficientNet-B4 teacher at 380 px with Inception mean/std next to a ResNet student at 224 px with
ImageNet mean/std). :class:`InputAdapter` converts a batch per teacher, on the fly, on the device.

:class:`TeacherEnsemble` implements the *teacher-source protocol* the objective
(:mod:`meal_lite.core.objective`) relies on: ``targets(images, batch) -> EnsembleOutput``. A cached
soft-label source implements the same method, using ``batch`` (the whole batch tuple) to find sample
indices or crop parameters. The ensemble has no temperature: its ``probs`` are at T = 1, and the
objective is the one place where a temperature is applied.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from meal_lite.errors import ConfigError, ModelError

__all__ = [
    "EnsembleOutput",
    "TeacherEnsemble",
    "EnsembleClassifier",
    "SharedTargets",
    "StoredTeacherOutputs",
    "InputAdapter",
    "average_teachers",
    "declared_num_classes",
]


@dataclass
class EnsembleOutput:
    """What a teacher source gives the objective for one batch (float32, no grad).

    probs: ``(N, C)`` mean of the teachers' softmax at temperature 1: the KL target. A temperature is
        applied by the objective (:mod:`meal_lite.core.objective`), never here.
    logits: ``(N, C)`` mean of the teachers' raw logits: the discriminator's "teacher" input in the
        official code; None for sources that store no logits (cached soft labels).
    teacher_logits: ``(K, N, C)`` each teacher's raw logits (for softening at another temperature and
        for analysis); None for sources that store no logits.
    """

    probs: torch.Tensor
    logits: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None

    def to(self, *args: Any, **kwargs: Any) -> "EnsembleOutput":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(*args, **kwargs)

        return EnsembleOutput(move(self.probs), move(self.logits), move(self.teacher_logits))


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


def average_teachers(teacher_logits: torch.Tensor) -> EnsembleOutput:
    """The ensemble's arithmetic, in one place: from the teachers' logits ``(K, N, C)``
    to its output.

    ``probs`` is the mean of the teachers' softmaxes, the KL target. That is NOT
    softmax(mean logits): the two differ whenever the teachers disagree (chapter 2 shows
    by how much), and the paper and the official code both average probabilities.
    ``logits`` is the mean of the raw logits: what the official code hands the
    discriminator as the teacher side.
    """
    teacher_logits = teacher_logits.float()
    probs = torch.softmax(teacher_logits, dim=-1).mean(dim=0)
    logits = teacher_logits.mean(dim=0)
    return EnsembleOutput(probs=probs, logits=logits, teacher_logits=teacher_logits)


class TeacherEnsemble(nn.Module):
    """Frozen teachers, averaged: the MEAL V2 target.

    Args:
        teachers: the teacher models (at least one). They are registered as submodules, frozen
            (``requires_grad_(False)``, stale gradients cleared) and put in eval mode, for good.
        input_adapters: optional, one per teacher (None entries = feed the batch as is).
        names: one name per teacher, for tables and plots (default ``teacher0``, ``teacher1``...).
        data_configs: one timm data config per teacher (what each expects), kept for reference.
    """

    def __init__(
        self,
        teachers: Sequence[nn.Module],
        input_adapters: Sequence[InputAdapter | None] | None = None,
        *,
        names: Sequence[str] | None = None,
        data_configs: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        super().__init__()
        teachers = list(teachers)
        if not teachers:
            raise ModelError(
                "A TeacherEnsemble needs at least one teacher; list teachers in the config or set teacher_preset."
            )
        input_adapters = list(input_adapters) if input_adapters is not None else [None] * len(teachers)
        names = list(names) if names is not None else [f"teacher{i}" for i in range(len(teachers))]
        data_configs = list(data_configs) if data_configs is not None else [None] * len(teachers)
        for what, values in (("input adapters", input_adapters), ("names", names), ("data configs", data_configs)):
            if len(values) != len(teachers):
                raise ModelError(
                    f"Got {len(values)} {what} for {len(teachers)} teachers; give one per teacher (None where an "
                    "input adapter is not needed)."
                )
        self.teachers = nn.ModuleList(teachers)
        self.adapters = nn.ModuleList(a if a is not None else nn.Identity() for a in input_adapters)
        self.teacher_names = [str(n) for n in names]
        self.teacher_data_configs = [dict(c) if c is not None else None for c in data_configs]
        self._observed_num_classes: int | None = None
        for p in self.teachers.parameters():
            p.requires_grad_(False)
            # A teacher trained a moment ago still holds its last gradient; an optimiser that (by mistake)
            # holds its parameters would apply that stale gradient at every step. Gone for good here.
            p.grad = None
        # Fail at construction (before any training) when the teachers declare different class counts.
        self._declared_num_classes()
        self.train(self.training)

    # -- frozen for good -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "TeacherEnsemble":
        # nn.Module.train() on any parent calls this method on its children, so
        # overriding it here is enough to keep teachers in eval mode however deep the
        # ensemble sits in a model tree.
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

    # -- forward ---------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each teacher's raw logits for batch ``x`` (after its input adapter), in
        teacher order."""
        outputs = [
            teacher(adapter(x))
            for teacher, adapter in zip(self.teachers, self.adapters)
        ]
        shapes = [tuple(o.shape) for o in outputs]
        if any(len(s) != 2 for s in shapes) or len(set(shapes)) != 1:
            described = ", ".join(f"teacher {i}: {s}" for i, s in enumerate(shapes))
            raise ModelError(
                f"The teachers returned logits of different shapes ({described}); "
                "every teacher must return "
                "(batch, classes) logits over the same classes."
            )
        self._observed_num_classes = shapes[0][1]
        return outputs

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> EnsembleOutput:
        """Average the teachers: mean of softmaxes (``probs``) and mean of logits
        (``logits``)."""
        # the teachers' logits stacked: (K, N, C)
        return average_teachers(
            torch.stack([o.float() for o in self.teacher_outputs(x)])
        )

    def targets(self, images: torch.Tensor, batch: Any = None) -> EnsembleOutput:
        """Teacher-source protocol: the targets for ``images``; ``batch`` (the whole batch tuple) is
        unused here but lets a cached soft-label source look up sample indices or crop parameters."""
        return self(images)

    def members(self) -> dict[str, "EnsembleClassifier"]:
        """``{name: classifier}`` for each teacher, to evaluate the members one by one.

        Each member becomes a one-teacher ensemble (same module, same input adapter) behind
        :class:`EnsembleClassifier`, so the ensemble's own freezing applies: no caller can put a
        teacher's BatchNorm back in training mode.
        """
        return {
            name: EnsembleClassifier(TeacherEnsemble([teacher], [adapter], names=[name], data_configs=[cfg]))
            for name, teacher, adapter, cfg in zip(
                self.teacher_names, self.teachers, self.adapters, self.teacher_data_configs
            )
        }

    def extra_repr(self) -> str:
        return f"num_teachers={len(self.teachers)}, names={self.teacher_names}"


class EnsembleClassifier(nn.Module):
    """The ensemble as a classifier: log of the averaged probabilities (argmax = ensemble prediction)."""

    def __init__(self, ensemble: TeacherEnsemble) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble(x).probs.clamp_min(1e-12).log()


class SharedTargets:
    """The teachers' outputs computed once per distinct batch and shared by several runs.

    The protocol's continuations of one seed see identical batches (same order, views and mixing), so the
    ``kl`` and ``meal`` arms would run the frozen teachers on the very same images. This source remembers
    the ensemble's output per batch, keyed by a hash of the images' bytes: a hit is exact, a miss runs the
    teachers. Its memory is one seed's batches: the protocol makes one per seed and drops it after
    (:meth:`clear` empties it sooner). Hashing copies each batch to the host, a synchronisation on a GPU,
    which is why the protocol uses it for its CPU runs; data whose teacher outputs were stored with the
    images use :class:`StoredTeacherOutputs` instead.
    """

    def __init__(self, ensemble: nn.Module) -> None:
        self.ensemble = ensemble
        self._memo: dict[bytes, Any] = {}
        self.hits = 0

    def targets(self, images: torch.Tensor, batch: Any = None) -> Any:
        key = hashlib.blake2b(images.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()
        key += repr((tuple(images.shape), str(images.dtype))).encode()
        if key in self._memo:
            self.hits += 1
        else:
            self._memo[key] = self.ensemble.targets(images, batch)
        return self._memo[key]

    def clear(self) -> None:
        self._memo.clear()


class StoredTeacherOutputs:
    """A teacher source reading the teachers' logits from the batch (``batch[2]``, ``(N, K, C)``).

    For data whose teacher outputs were computed beforehand (the dark-knowledge experiment stores them
    with every view): the same :func:`average_teachers` as :class:`TeacherEnsemble`, so the objective
    cannot tell the difference.
    """

    def targets(self, images: torch.Tensor, batch: Any) -> EnsembleOutput:
        return average_teachers(batch[2].to(images.device, non_blocking=True).float().transpose(0, 1))  # (K, N, C)
