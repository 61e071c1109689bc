"""The one inference path: device choice, normalised batched logits, temperature-scaled softmax, the decision
rule, and the Predictor that serves one model with its applicability gate.

Training, evaluation and the app all go through :func:`batch_logits`, :func:`softmax` and :func:`decide`.
A Predictor wraps one model that may be shared by many app sessions (``st.cache_resource``). Inference never
mutates it: no hooks, eval mode, ``torch.inference_mode``. Grad-CAM work (which needs hooks) runs on private
replicas, see :mod:`medimg.explain`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medimg.errors import ModelInputError
from medimg.gate import DistributionGate, GateVerdict, check_image
from medimg.io.image import MedicalImage, Window
from medimg.models import load_model
from medimg.preprocess import Preprocessed, normalise_batch
from medimg.preprocess import run as preprocess_run
from medimg.spec import ModelSpec, PreprocessConfig
from medimg.uncertainty import Uncertainty, summarise, tta_logits

__all__ = ["Prediction", "Predictor", "choose_device", "softmax", "decide", "batch_logits", "check_model_input"]


def choose_device(pref: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise ``torch.device(pref)``."""
    if isinstance(pref, torch.device):
        return pref
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` over the last axis (the classes).

    Parameters
    ----------
    logits : (..., K) float ndarray
        E.g. (N, K) for N images, or (V, N, K) for V test-time-augmentation views of N images.
    temperature : float > 0

    Returns
    -------
    (..., K) float64 ndarray, each vector over K sums to 1
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def decide(probs: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The decision rule: label indices for calibrated probabilities.

    Binary models with ``spec.threshold`` and ``spec.positive_label``: the positive class when its probability
    is >= the threshold; otherwise (and for more classes) the most probable class.

    Parameters
    ----------
    probs : (N, K) or (K,) float ndarray
        Calibrated probabilities.
    spec : ModelSpec

    Returns
    -------
    (N,) int64 ndarray, or a 0-d one for a (K,) input
    """
    p = np.asarray(probs, dtype=np.float64)
    if spec.threshold is not None and spec.positive_label is not None and p.shape[-1] == 2:
        pos = int(spec.positive_label)
        return np.where(p[..., pos] >= spec.threshold, pos, 1 - pos).astype(np.int64)
    return np.argmax(p, axis=-1).astype(np.int64)


def check_model_input(x: torch.Tensor, config: PreprocessConfig) -> None:
    """Refuse a batch that is not ``(N, C, H, W)`` float32 of the spec's size with finite values.

    Raises
    ------
    ModelInputError
        Wrong shape, dtype or non-finite values.
    """
    c, (h, w) = config.in_chans, config.input_size
    if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
        raise ModelInputError(f"Model input must be (N, {c}, {h}, {w}); got {tuple(x.shape)}.")
    if x.dtype != torch.float32:
        raise ModelInputError(f"Model input must be float32; got {x.dtype}.")
    if not torch.isfinite(x).all():
        raise ModelInputError("Model input holds non-finite values.")


@torch.inference_mode()
def batch_logits(model: nn.Module, x: np.ndarray | torch.Tensor, config: PreprocessConfig,
                 device: torch.device | str = "cpu", batch_size: int = 256, normalised: bool = False) -> np.ndarray:
    """Logits of a batch of images, in chunks, under ``torch.inference_mode``.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode (not changed).
    x : (N, C, H, W) float32 ndarray or tensor
        Preprocessed images in [0, 1] (normalised here by :func:`medimg.preprocess.normalise_batch`), or
        already-normalised model inputs when ``normalised``.
    config : PreprocessConfig
        The spec's preprocessing (size, channels, mean/std).
    device : torch.device or str
    batch_size : int
    normalised : bool

    Returns
    -------
    (N, K) float32 ndarray

    Raises
    ------
    ModelInputError
        Wrong shape, dtype or non-finite values.
    """
    t = torch.as_tensor(x)
    check_model_input(t, config)
    out = []
    for i in range(0, len(t), batch_size):
        xb = t[i : i + batch_size].to(device)
        out.append(model(xb if normalised else normalise_batch(xb, config)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image.

    Attributes
    ----------
    probs : (K,) float64 ndarray
        Calibrated probabilities (temperature-scaled softmax), in ``spec.labels`` order, summing to 1.
    label_index : int
    label : str
    logits : (K,) float32 ndarray
    gate : GateVerdict
        Applicability checks; show ``gate.failures`` beside the result.
    preprocessed : Preprocessed
        The steps and the model input that produced this prediction.
    device : str
        ``"cuda"`` or ``"cpu"``: where the network ran.
    seconds : dict of str to float
        Wall time per stage: ``preprocess``, ``predict``, ``gate``.
    labels : tuple of str
        The spec's labels, in ``probs`` order.
    uncertainty : medimg.uncertainty.Uncertainty or None
        Spread of the calibrated probabilities over the spec's test-time augmentation views (None when the
        spec has none or TTA was not asked for). ``probs`` stay the single-view probabilities the temperature
        was fitted for; ``uncertainty.mean_probs`` is the TTA average.
    """

    probs: np.ndarray
    label_index: int
    label: str
    logits: np.ndarray
    gate: GateVerdict
    preprocessed: Preprocessed
    device: str
    seconds: dict[str, float] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    uncertainty: Uncertainty | None = None

    @property
    def probabilities(self) -> dict[str, float]:
        """``{label: probability}``."""
        return {k: float(v) for k, v in zip(self.labels, self.probs, strict=True)}


class Predictor:
    """Calibrated inference for one model and its spec.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode; never mutated by the Predictor.
    spec : ModelSpec
    device : str or torch.device
        ``"auto"`` picks CUDA when available.

    Notes
    -----
    Thread-safe: concurrent :meth:`predict` calls share the model without hooks or state changes.
    """

    def __init__(self, model: nn.Module, spec: ModelSpec, device: str | torch.device = "auto") -> None:
        self.device = choose_device(device)
        self.model = model.to(self.device).eval()
        self.spec = spec
        #: The fitted out-of-distribution check (statistics + feature taps sharing the model's weights).
        self.distribution_gate = DistributionGate(spec, self.model, self.device)

    @classmethod
    def from_spec(cls, spec_path: str | Path, device: str | torch.device = "auto") -> Predictor:
        """Load ``<name>.json`` + ``<name>.safetensors`` (sha256-checked) and wrap them.

        Raises
        ------
        medimg.errors.SpecError, medimg.errors.WeightsError
        """
        dev = choose_device(device)
        model, spec = load_model(spec_path, device=dev)
        return cls(model, spec, dev)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def logits(self, x: np.ndarray | torch.Tensor, batch_size: int = 128) -> np.ndarray:
        """Raw logits for normalised model inputs.

        Parameters
        ----------
        x : (N, C, H, W) float32 ndarray or tensor
            Normalised model inputs (:attr:`Preprocessed.model_input` stacked).

        Returns
        -------
        (N, K) float32 ndarray

        Raises
        ------
        ModelInputError
            Wrong shape, dtype or non-finite values.
        """
        return batch_logits(self.model, x, self.spec.preprocess, self.device, batch_size, normalised=True)

    def predict_proba(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / spec.temperature)``: (N, K) float64."""
        return softmax(self.logits(x), self.spec.temperature)

    def preprocess(self, image: MedicalImage, window: Window | None = None) -> Preprocessed:
        """:func:`medimg.preprocess.run` with this model's spec."""
        return preprocess_run(image, self.spec.preprocess, window)

    def decide(self, probs: np.ndarray) -> int:
        """Label index for one (K,) probability vector under the spec's decision rule (:func:`decide`)."""
        return int(decide(probs, self.spec))

    def gate(self, image: MedicalImage, pre: Preprocessed) -> GateVerdict:
        """Applicability checks for one image (see :mod:`medimg.gate`)."""
        checks = [*check_image(image, pre, self.spec), *self.distribution_gate.check(pre)]
        return GateVerdict(tuple(checks))

    def tta_view_logits(self, model_input: np.ndarray | torch.Tensor) -> np.ndarray:
        """Logits of each test-time augmentation view of one input, in one batched forward pass.

        Parameters
        ----------
        model_input : (C, H, W) float32 ndarray or tensor
            Normalised model input (:attr:`Preprocessed.model_input`).

        Returns
        -------
        (V, K) float32 ndarray, V = ``len(spec.tta)`` (``spec.tta`` must not be empty)

        Raises
        ------
        ModelInputError
            Wrong shape, dtype or non-finite values.
        """
        t = torch.as_tensor(model_input)[None]
        check_model_input(t, self.spec.preprocess)
        pp = self.spec.preprocess
        fill = [-m / s for m, s in zip(pp.mean, pp.std, strict=True)]
        return tta_logits(self.model, t.to(self.device), self.spec.tta, fill)[:, 0].numpy()

    def tta_probs(self, model_input: np.ndarray | torch.Tensor) -> np.ndarray:
        """Calibrated probabilities of each test-time augmentation view of one input: (V, K) float64 ndarray
        (see :meth:`tta_view_logits`)."""
        return softmax(self.tta_view_logits(model_input), self.spec.temperature)

    def uncertainty(self, pre: Preprocessed, label_index: int) -> Uncertainty | None:
        """Spread of the calibrated probabilities over the spec's test-time augmentation views of one input.

        Parameters
        ----------
        pre : Preprocessed
            The image's preprocessing for this model.
        label_index : int
            The reported label (agreement is measured against it).

        Returns
        -------
        medimg.uncertainty.Uncertainty or None
            None when the spec has no TTA views. One batched forward pass of ``len(spec.tta)`` views.
        """
        if not self.spec.tta:
            return None
        return summarise(self.tta_probs(pre.model_input), self.spec.tta, int(label_index))

    def predict(self, image: MedicalImage, window: Window | None = None, tta: bool = False) -> Prediction:
        """Preprocess, run the network and the applicability gate for one image.

        Parameters
        ----------
        image : MedicalImage
        window : Window, optional
            Display window to use instead of the spec's (changes what the network sees).
        tta : bool
            Also run the spec's test-time augmentation views and report their spread as
            :attr:`Prediction.uncertainty` (one batched forward pass of ``len(spec.tta)`` views instead of one
            view). Off by default: ask for it where the stability is shown (the Analyze page does).

        Returns
        -------
        Prediction

        Raises
        ------
        medimg.errors.PreprocessError
            The image cannot be turned into the model input.
        """
        t0 = time.perf_counter()
        pre = self.preprocess(image, window)
        t1 = time.perf_counter()
        views = self.tta_view_logits(pre.model_input) if tta and self.spec.tta else None
        if views is not None and "identity" in self.spec.tta:  # the plain prediction is one of the views
            logits = views[self.spec.tta.index("identity")]
        else:
            logits = self.logits(pre.model_input[None])[0]
        probs = softmax(logits[None], self.spec.temperature)[0]
        idx = self.decide(probs)
        unc = (summarise(softmax(views, self.spec.temperature), self.spec.tta, idx) if views is not None
               else None)
        t2 = time.perf_counter()
        verdict = self.gate(image, pre)
        t3 = time.perf_counter()
        return Prediction(probs=probs, label_index=idx, label=self.spec.labels[idx], logits=logits, gate=verdict,
                          preprocessed=pre, device=self.device.type,
                          seconds={"preprocess": t1 - t0, "predict": t2 - t1, "gate": t3 - t2},
                          labels=self.spec.labels, uncertainty=unc)
