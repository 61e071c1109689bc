"""Options of ``medimg train``: one frozen dataclass, the one place their defaults live (the command line
reads its defaults from here). Pure Python: importing it loads no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``medimg train`` (defaults in one place).

    Attributes
    ----------
    task : str
        Key of :data:`medimg.training.tasks.TASKS`, or ``csv:<labels.csv>[::...]``.
    arch : str
        Registry architecture.
    input_size : int
        Square input side in pixels.
    epochs, batch_size, lr, weight_decay, patience, seed : training hyper-parameters
        ``patience``: epochs without a better validation AUROC (a tie: lower validation loss) before stopping.
    label_smoothing : float
    class_weighting : bool
        Weight the loss by inverse class frequency.
    balanced_sampling : bool
        Draw each epoch's samples class-balanced, with replacement (every class equally often; see
        :class:`medimg.training.data.GlobalBatchSampler`) instead of a permutation; the loss is then unweighted
        (``class_weighting`` would count the imbalance twice).
    out : str
        Output folder for weights, spec, report and log.
    name : str, optional
        File stem; ``<task>_<arch>_<size>`` by default.
    limit : int, optional
        Use only the first N images per split (quick checks).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    num_threads : int, optional
        torch CPU threads.
    mean, std : tuple of float, optional
        Normalisation per input channel; 0.5 / 0.25 for each of the task's channels by default.
    half : bool
        Store the shipped weights as float16 (half the size; loaded back as float32).
    gate : bool
        Fit the out-of-distribution gate (:func:`medimg.training.gate_fit.fit_gate`) into the spec after training.
    ema_decay : float, optional
        Keep an exponential moving average of the weights (and BatchNorm buffers) with this decay per step;
        validation, checkpoint selection and the shipped weights use the average. None turns it off.
    pretrained : str, optional
        Initial weights (:func:`medimg.models.pretrained.load_pretrained`): ``"imagenet"`` (the architecture's
        ImageNet-1k release, sha256-verified; mean/std default to ImageNet's) or a ``.safetensors`` path.
        None: random initialisation.
    freeze_epochs : int
        With ``pretrained``: train only the new classifier head for this many epochs first (backbone frozen,
        its BatchNorm statistics still adapting), then everything.
    backbone_lr_scale : float
        With ``pretrained``: the backbone's learning rate is ``lr * backbone_lr_scale`` (discriminative
        learning rates; the head keeps ``lr``).
    teachers : tuple of str
        Spec JSONs of trained networks to distil (:mod:`medimg.training.distil`; Hinton et al. 2015): the loss
        becomes ``(1 - distil_weight) * cross-entropy + distil_weight * tau**2 * KL(teachers' mean softened
        probability || student's)``, the teachers seeing the same augmented batch. Empty: no distillation.
    distil_weight : float
        Weight in [0, 1] of the distillation term (with ``teachers``).
    distil_temperature : float
        Distillation temperature ``tau`` > 0 (with ``teachers``).
    mask_weight : float
        Weight >= 0 of the lesion-mask auxiliary loss (:mod:`medimg.training.masks`): a 1 x 1 head on the
        ``cam_layer`` predicts the expert mask, its per-image binary cross-entropy is added with this weight.
        Needs a task whose manifest has a ``mask`` column (BUSI); the head is not shipped. 0: off.
    grade_weight : float
        Weight >= 0 of the grade-aware auxiliary loss (:mod:`medimg.training.grades`): the negative log-likelihood
        of the true Bethesda grade (the summed probability of its classes) is added, per sample and with the same
        class weights, to the cross-entropy. Needs Bethesda class labels (cric-cervix). 0: off.
    data_pack : str, optional
        Train from a data pack (:func:`medimg.training.pack.write_pack`) instead of the data folder: for a
        machine without the data; finish the model on the real images with ``medimg finalise``.
    channels_last : bool
        NHWC memory format on the CPU as well (always on with CUDA); faster for MobileNetV2 on x86 CPUs
        (``bench/pretrained_speed.py``).
    bf16 : bool
        bfloat16 autocast for the training forward pass on the CPU as well (always on with CUDA); about 1.6 x
        faster on CPUs with AVX512-BF16 (MobileNetV2 224 px, batch 32, 2 threads: 38 vs 23 img/s). Validation,
        selection and the shipped weights stay float32.
    """

    task: str = "kermany-cxr"
    arch: str = "resnet18"
    input_size: int = 128
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8
    seed: int = 0
    label_smoothing: float = 0.0
    class_weighting: bool = True
    balanced_sampling: bool = False
    out: str = "weights"
    name: str | None = None
    limit: int | None = None
    device: str = "auto"
    num_threads: int | None = None
    ema_decay: float | None = 0.995
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    half: bool = True
    gate: bool = True
    pretrained: str | None = None
    freeze_epochs: int = 0
    backbone_lr_scale: float = 1.0
    channels_last: bool = False
    bf16: bool = False
    data_pack: str | None = None
    teachers: tuple[str, ...] = ()
    distil_weight: float = 0.5
    distil_temperature: float = 2.0
    mask_weight: float = 0.0
    grade_weight: float = 0.0

    @property
    def stem(self) -> str:
        """File stem: ``name``, or ``<task>_<arch>_<size>`` with every character other than letters, digits, ``.``
        and ``_`` of the task key replaced by ``_`` (``head-ct::fold=2`` -> ``head_ct_fold_2``)."""
        import re

        return self.name or f"{re.sub(r'[^A-Za-z0-9_.]+', '_', self.task)}_{self.arch}_{self.input_size}"
