"""Out-of-distribution (OOD) statistics of the applicability gate: the fitted model, its scores and its limit.

numpy only (no torch): the features come from the architecture's feature taps (:mod:`medimg.gate`); fitting them
to a model's training split is the workshop's job (:mod:`medimg.training.gate_fit`).

Per layer, the score is the Mahalanobis distance of an image's pooled features to the nearest class-conditional
Gaussian of the training features, all classes sharing one covariance (Lee et al. 2018). The shared covariance
is Ledoit-Wolf shrunk (well conditioned with a few thousand images in 512 dimensions) and stored compactly as
its top ``k`` principal directions plus one isotropic variance for the rest (probabilistic PCA, Tipping &
Bishop 1999). The squared distance is then the Hotelling T^2 of the top ``k`` components plus the residual
(squared prediction error) divided by the residual variance, so departures in the low-variance directions,
which carry much of the OOD signal (Kamoi & Kobayashi 2020), still count. With ``k`` equal to the feature
dimension this is exactly the Mahalanobis distance under the shrunk covariance. :class:`LayeredDistribution`
combines several layers (the feature ensemble of Lee et al. 2018) into one score, optionally with one more
score, a :class:`ReferenceDiscriminator`: a logistic regression between the training images and a reference set of
images the model must refuse although they are close to its domain (adult chest films for a paediatric chest
X-ray model: outlier exposure, Hendrycks et al. 2019), scaled like the layers by its validation quantile.

References
----------
.. [1] K. Lee, K. Lee, H. Lee, J. Shin, "A simple unified framework for detecting out-of-distribution samples
   and adversarial attacks", NeurIPS 2018.
.. [2] O. Ledoit, M. Wolf, "A well-conditioned estimator for large-dimensional covariance matrices",
   J. Multivariate Anal. 88 (2004).
.. [3] M. E. Tipping, C. M. Bishop, "Probabilistic principal component analysis", JRSS-B 61 (1999).
.. [4] R. Kamoi, K. Kobayashi, "Why is the Mahalanobis distance effective for anomaly detection?", 2020.
.. [5] V. Vovk, A. Gammerman, G. Shafer, "Algorithmic Learning in a Random World" (split-conformal quantile).
.. [6] D. Hendrycks, M. Mazeika, T. Dietterich, "Deep anomaly detection with outlier exposure", ICLR 2019.
"""

from __future__ import annotations

import base64
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medimg.errors import SpecError

__all__ = ["DistributionModel", "LayeredDistribution", "ReferenceDiscriminator", "conformal_threshold",
           "conformal_pass_rate_range", "encode_array", "decode_array"]

log = logging.getLogger(__name__)

_DTYPES = {"<f4": np.float32, "<f8": np.float64}


def encode_array(a: np.ndarray, dtype: str = "<f4") -> dict[str, Any]:
    """A JSON-ready, compact form of a float array: little-endian bytes in base64, with dtype and shape."""
    arr = np.ascontiguousarray(a, dtype=np.dtype(dtype))
    return {"dtype": dtype, "shape": list(arr.shape), "base64": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_array(d: Any, name: str) -> np.ndarray:
    """Inverse of :func:`encode_array` (float64 result); raises :class:`SpecError` on anything malformed.

    Only raw little-endian float bytes are accepted (``numpy.frombuffer``): nothing is unpickled.
    """
    try:
        dtype = _DTYPES[d["dtype"]]
        shape = tuple(int(s) for s in d["shape"])
        raw = base64.b64decode(d["base64"], validate=True)
    except (KeyError, TypeError, ValueError) as err:
        raise SpecError(f"The gate parameter {name!r} in the model specification is malformed.") from err
    if any(s < 0 for s in shape) or math.prod(shape) * np.dtype(dtype).itemsize != len(raw):
        raise SpecError(f"The gate parameter {name!r} does not match its declared shape {list(shape)}.")
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"The gate parameter {name!r} holds non-finite values.")
    return arr


def conformal_threshold(scores: np.ndarray, quantile: float) -> float:
    """Split-conformal threshold: the ``ceil((n + 1) * quantile)``-th smallest of ``n`` held-out scores.

    For a new score exchangeable with the held-out ones, ``P(score <= threshold) >= quantile`` (finite-sample,
    distribution-free). When ``(n + 1) * quantile > n`` the maximum is used (and the guarantee is weaker).

    Parameters
    ----------
    scores : (n,) float ndarray
        In-distribution scores not used to fit the statistics (the validation split).
    quantile : float in (0, 1)
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if s.size == 0 or not 0.0 < quantile < 1.0:
        raise ValueError("need at least one score and 0 < quantile < 1")
    rank = math.ceil((s.size + 1) * quantile)
    if rank > s.size:
        log.warning("only %d validation scores: the %.3g quantile is not attainable; using the maximum",
                    s.size, quantile)
    return float(s[min(rank, s.size) - 1])


@dataclass(frozen=True)
class DistributionModel:
    """Class-conditional Gaussians with one shared, shrunk, low-rank-plus-isotropic covariance.

    Attributes
    ----------
    class_means : (K, D) float64 ndarray
        Mean training feature of each class present in the training split.
    components : (D, k) float64 ndarray
        Orthonormal top-``k`` eigenvectors of the shared (within-class) covariance.
    variances : (k,) float64 ndarray
        Their eigenvalues (> 0).
    residual_variance : float
        Mean of the remaining ``D - k`` eigenvalues; 0 when ``k == D``.
    shrinkage : float
        Ledoit-Wolf shrinkage intensity used.
    """

    class_means: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual_variance: float
    shrinkage: float = 0.0

    @property
    def feature_dim(self) -> int:
        return int(self.class_means.shape[1])

    @classmethod
    def fit(cls, features: np.ndarray, y: np.ndarray, n_components: int = 64) -> DistributionModel:
        """Fit on training features.

        Parameters
        ----------
        features : (N, D) float ndarray
            Penultimate features of the training images.
        y : (N,) int ndarray
            Their labels.
        n_components : int
            ``k``: principal directions kept exactly; the rest share one variance.
        """
        from sklearn.covariance import ledoit_wolf

        f = np.asarray(features, dtype=np.float64)
        y = np.asarray(y).ravel()
        if f.ndim != 2 or len(f) != len(y) or len(f) < 2:
            raise ValueError(f"need (N, D) features with N >= 2 matching labels, got {f.shape} and {y.shape}")
        classes = np.unique(y)
        means = np.stack([f[y == c].mean(axis=0) for c in classes])
        centred = f - means[np.searchsorted(classes, y)]
        cov, shrinkage = ledoit_wolf(centred, assume_centered=True)
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1]
        evals, evecs = np.maximum(evals[order], 1e-12), evecs[:, order]
        d = f.shape[1]
        k = int(min(max(n_components, 1), d))
        resid = float(evals[k:].mean()) if k < d else 0.0
        return cls(means, evecs[:, :k], evals[:k], resid, float(shrinkage))

    def score(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance (square root of the squared form) to the nearest class mean.

        Parameters
        ----------
        features : (N, D) float ndarray

        Returns
        -------
        (N,) float64 ndarray, >= 0
        """
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.feature_dim:
            raise ValueError(f"expected (N, {self.feature_dim}) features, got {f.shape}")
        r = f[:, None, :] - self.class_means[None]  # (N, K, D)
        z = r @ self.components  # (N, K, k)
        z2 = z**2
        m = (z2 / self.variances).sum(axis=-1)  # (N, K)
        if self.residual_variance > 0:
            m = m + np.clip((r**2).sum(axis=-1) - z2.sum(axis=-1), 0.0, None) / self.residual_variance
        return np.sqrt(m.min(axis=1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (arrays as base64 float32, about 180 kB for D = 512, k = 64)."""
        return {"class_means": encode_array(self.class_means), "components": encode_array(self.components),
                "variances": encode_array(self.variances, "<f8"),
                "residual_variance": float(self.residual_variance), "shrinkage": float(self.shrinkage)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistributionModel:
        """Parse :meth:`to_dict` output; raises :class:`SpecError` when malformed or inconsistent."""
        if not isinstance(d, dict):
            raise SpecError("The gate's distribution parameters are not a JSON object.")
        means = decode_array(d.get("class_means"), "class_means")
        comps = decode_array(d.get("components"), "components")
        var = decode_array(d.get("variances"), "variances")
        try:
            resid = float(d["residual_variance"])
            shrink = float(d.get("shrinkage", 0.0))
        except (KeyError, TypeError, ValueError) as err:
            raise SpecError("The gate's residual_variance is missing or not a number.") from err
        if (means.ndim != 2 or comps.ndim != 2 or var.ndim != 1 or comps.shape[0] != means.shape[1]
                or comps.shape[1] != var.shape[0] or comps.shape[1] > comps.shape[0]):
            raise SpecError("The gate's distribution parameters have inconsistent shapes.")
        if np.any(var <= 0) or not math.isfinite(resid) or resid < 0 or (resid == 0 and comps.shape[1] < comps.shape[0]):
            raise SpecError("The gate's variances must be positive.")
        return cls(means, comps, var, resid, shrink)


def conformal_pass_rate_range(n_calibration: int, n_test: int, quantile: float,
                              alpha: float = 0.001) -> tuple[float, float]:
    """Expected share of ``n_test`` exchangeable images within a :func:`conformal_threshold`, and its lowest
    plausible value.

    With ``n`` calibration scores and rank ``k = min(ceil((n + 1) q), n)``, the coverage of the threshold is
    Beta(k, n + 1 - k) distributed over calibration draws, so the number of passing test images is
    Beta-binomial(n_test, k, n + 1 - k) (Vovk et al. 2005; Angelopoulos & Bates 2021, section 3.2). A test pass
    rate below the ``alpha`` quantile says the test images are not exchangeable with the validation images.

    Parameters
    ----------
    n_calibration : int
        Validation scores the threshold was set on (>= 1).
    n_test : int
        Test images (>= 1).
    quantile : float in (0, 1)
    alpha : float in (0, 1)

    Returns
    -------
    (expected, lowest) : tuple of float in [0, 1]
        Mean pass rate, and the ``alpha`` quantile of the pass rate.
    """
    from scipy.stats import betabinom

    if n_calibration < 1 or n_test < 1 or not 0.0 < quantile < 1.0 or not 0.0 < alpha < 1.0:
        raise ValueError("need n_calibration, n_test >= 1 and quantile, alpha in (0, 1)")
    k = min(math.ceil((n_calibration + 1) * quantile), n_calibration)
    d = betabinom(n_test, k, n_calibration + 1 - k)
    return float(d.mean() / n_test), float(d.ppf(alpha) / n_test)


#: Logits are clipped to this magnitude (exp(60) ~ 1e26, finite in float64).
_MAX_LOGIT = 60.0


@dataclass(frozen=True)
class ReferenceDiscriminator:
    """Logistic regression between a model's training images and a reference set it must refuse.

    Input: the per-layer features of :class:`LayeredDistribution` (stage channel means and penultimate features),
    concatenated and standardised with the training mean and standard deviation. With ``p`` the (class-balanced)
    probability that an image belongs to the reference set, the score is ``-log(1 - p) = softplus(logit)``, the
    surprise of "like the training images": positive, monotone in ``p``, near 0 for training-like images and
    about the logit for reference-like ones, so that divided by its validation quantile it combines with the
    layers' Mahalanobis ratios (``p`` itself divided by a quantile near 1 could never exceed the combined limit;
    the odds ``exp(logit)`` reach 1e12 on images far from both classes). Serving needs a dot product and a
    log-sigmoid: numpy only.

    Attributes
    ----------
    reference : str
        What the reference set is, for the user (e.g. ``"adult chest radiographs"``).
    mean, std : (D,) float64 ndarray
        Standardisation of the concatenated features (std > 0).
    coef : (D,) float64 ndarray
        Logistic-regression weights on the standardised features.
    intercept : float
    c : float or None
        The inverse regularisation strength chosen when fitting (information only).
    """

    reference: str
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: float
    c: float | None = None

    @property
    def feature_dim(self) -> int:
        return int(self.coef.shape[0])

    @classmethod
    def fit(cls, train: list[np.ndarray], reference: list[np.ndarray], name: str,
            cs: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0), seed: int = 0) -> ReferenceDiscriminator:
        """Fit on training-split features (class 0) and reference-set features (class 1).

        Class-balanced (each class weighs half), L2-regularised; the inverse regularisation ``C`` is chosen from
        ``cs`` by 5-fold stratified cross-validated log loss on these same images with the one-standard-error rule
        (the smallest ``C`` whose mean loss is within one standard error of the best: the smoothest boundary the
        data support, which passes more of an in-distribution test split that drifted from the training split;
        Hastie, Tibshirani & Friedman, "The Elements of Statistical Learning", 2009, section 7.10), then refitted
        on all of them (scikit-learn, lbfgs: deterministic).

        Parameters
        ----------
        train, reference : list of (N, D_l) float ndarrays
            Per-layer features of the training split and of the reference set (same layers, same order).
        name : str
            :attr:`reference`.
        cs : tuple of float
            Candidate ``C`` values.
        seed : int
            Seed of the cross-validation folds.

        Raises
        ------
        ValueError
            Mismatched layers, or fewer than 5 images in a class.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        if len(train) != len(reference) or not train:
            raise ValueError("need the same layers for the training and the reference features")
        a = np.concatenate([np.asarray(f, np.float64) for f in train], axis=1)
        b = np.concatenate([np.asarray(f, np.float64) for f in reference], axis=1)
        if a.shape[1] != b.shape[1] or len(a) < 5 or len(b) < 5:
            raise ValueError(f"need >= 5 images per class with equal feature sizes, got {a.shape} and {b.shape}")
        mean = a.mean(axis=0)
        std = a.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        x = (np.vstack([a, b]) - mean) / std
        y = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
        cs = tuple(sorted(cs))
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)

        def model(c: float) -> LogisticRegression:
            return LogisticRegression(C=c, class_weight="balanced", max_iter=5000)

        losses = np.array([-cross_val_score(model(c), x, y, cv=folds, scoring="neg_log_loss") for c in cs])
        mean_loss, se = losses.mean(axis=1), losses.std(axis=1, ddof=1) / np.sqrt(losses.shape[1])
        best = int(mean_loss.argmin())
        c = cs[int(np.flatnonzero(mean_loss <= mean_loss[best] + se[best])[0])]
        log.info("reference discriminator: C %s, cross-validated log loss %s", c, np.round(mean_loss, 4).tolist())
        clf = model(c).fit(x, y)
        return cls(name, mean, std, clf.coef_[0].astype(np.float64), float(clf.intercept_[0]), float(c))

    def logit(self, features: list[np.ndarray]) -> np.ndarray:
        """(N,) log-odds of the reference class from per-layer (N, D_l) features."""
        f = np.concatenate([np.asarray(x, np.float64) for x in features], axis=1)
        if f.shape[1] != self.feature_dim:
            raise ValueError(f"expected {self.feature_dim} concatenated features, got {f.shape[1]}")
        return ((f - self.mean) / self.std) @ self.coef + self.intercept

    def probability(self, features: list[np.ndarray]) -> np.ndarray:
        """(N,) probability of the reference class, in [0, 1] (the sigmoid of :meth:`logit`)."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logit(features), -_MAX_LOGIT, _MAX_LOGIT)))

    def score(self, features: list[np.ndarray]) -> np.ndarray:
        """(N,) ``-log(1 - p) = log(1 + exp(logit))`` (softplus), > 0 (the logit clipped to +-60)."""
        return np.logaddexp(0.0, np.clip(self.logit(features), -_MAX_LOGIT, _MAX_LOGIT))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (arrays as base64 float64)."""
        return {"reference": self.reference, "mean": encode_array(self.mean, "<f8"),
                "std": encode_array(self.std, "<f8"), "coef": encode_array(self.coef, "<f8"),
                "intercept": float(self.intercept), **({} if self.c is None else {"C": self.c})}

    @classmethod
    def from_dict(cls, d: Any) -> ReferenceDiscriminator:
        """Parse :meth:`to_dict` output; raises :class:`SpecError` when malformed or inconsistent."""
        if not isinstance(d, dict):
            raise SpecError("The gate's reference discriminator is not a JSON object.")
        mean, std, coef = (decode_array(d.get(k), k) for k in ("mean", "std", "coef"))
        try:
            intercept = float(d["intercept"])
            name = str(d["reference"])
        except (KeyError, TypeError, ValueError) as err:
            raise SpecError("The gate's reference discriminator has no valid intercept or reference name.") from err
        if not (mean.ndim == std.ndim == coef.ndim == 1 and mean.shape == std.shape == coef.shape):
            raise SpecError("The gate's reference discriminator has inconsistent shapes.")
        if not math.isfinite(intercept) or np.any(std <= 0):
            raise SpecError("The gate's reference discriminator needs positive scales and a finite intercept.")
        c = d.get("C")
        return cls(name, mean, std, coef, intercept, float(c) if isinstance(c, (int, float)) else None)


@dataclass
class LayeredDistribution:
    """A :class:`DistributionModel` per network layer, combined into one out-of-distribution score.

    Each layer's Mahalanobis distance is divided by its own scale (its validation-split quantile, so 1.0 means
    "at the limit that layer alone would set") and the score is the largest ratio over layers. The early layers
    see image statistics (texture, noise, contrast) that a small single-task network's penultimate layer can
    ignore: with the penultimate layer alone a breast-ultrasound model let half of the brain MRIs through.
    This is Lee et al.'s (2018) feature ensemble with a fixed, unsupervised combination: their learned layer
    weights need out-of-distribution validation data, which would not cover what a clinic actually uploads.

    A :class:`ReferenceDiscriminator` (optional) adds one more score, scaled the same way (its score divided by
    its validation quantile): it targets one known near-domain population (adult chest films for a paediatric
    model) that the unsupervised distances let through. Its scale and the combined limit are set on the validation
    split, which it was not fitted on, so the split-conformal guarantee for in-distribution images still holds.

    Attributes
    ----------
    layers : tuple of str
        Layer names, in forward order; the last one is the penultimate (classifier-input) layer.
    models : tuple of DistributionModel
        One per layer.
    scales : (L,) float64 ndarray
        Each layer's divisor (> 0).
    discriminator : ReferenceDiscriminator or None
    discriminator_scale : float
        Its divisor (> 0; 1.0 when there is none).
    """

    layers: tuple[str, ...]
    models: tuple[DistributionModel, ...]
    scales: np.ndarray
    discriminator: ReferenceDiscriminator | None = None
    discriminator_scale: float = 1.0

    @classmethod
    def fit(cls, layers: tuple[str, ...], train: list[np.ndarray], y: np.ndarray, val: list[np.ndarray],
            quantile: float, n_components: int = 64, reference: list[np.ndarray] | None = None,
            reference_name: str = "reference images",
            reference_cs: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)) -> LayeredDistribution:
        """Fit one model per layer on training features; scale each by its validation ``quantile``.

        Parameters
        ----------
        layers : tuple of str
        train, val : list of (N, D_l) float ndarrays
            Per-layer features of the training and validation splits, in the order of ``layers``.
        y : (N_train,) int ndarray
        quantile : float in (0, 1)
        n_components : int
            See :meth:`DistributionModel.fit`.
        reference : list of (M, D_l) float ndarrays, optional
            Per-layer features of a reference set to refuse: adds a :class:`ReferenceDiscriminator` (training
            split vs this set), scaled by its validation ``quantile``.
        reference_name : str
            What the reference set is, for the user.
        reference_cs : tuple of float
            Candidate inverse regularisation strengths of the discriminator (see :meth:`ReferenceDiscriminator.fit`).
        """
        if not (len(layers) == len(train) == len(val) >= 1):
            raise ValueError("need one training and one validation feature array per layer")
        models = tuple(DistributionModel.fit(f, y, n_components) for f in train)
        models = tuple(DistributionModel.from_dict(m.to_dict()) for m in models)  # score with what is stored
        scales = np.array([conformal_threshold(m.score(f), quantile) for m, f in zip(models, val, strict=True)])
        disc, disc_scale = None, 1.0
        if reference is not None:
            disc = ReferenceDiscriminator.from_dict(
                ReferenceDiscriminator.fit(train, reference, reference_name, cs=reference_cs).to_dict())
            disc_scale = max(conformal_threshold(disc.score(val), quantile), 1e-12)
        return cls(tuple(layers), models, np.maximum(scales, 1e-12), disc, float(disc_scale))

    @classmethod
    def single(cls, layer: str, model: DistributionModel) -> LayeredDistribution:
        """One layer, unscaled: the score is that layer's Mahalanobis distance (the penultimate-only gate)."""
        return cls((layer,), (model,), np.ones(1))

    def without_discriminator(self) -> LayeredDistribution:
        """The same layers without the reference discriminator (for before/after comparisons)."""
        return LayeredDistribution(self.layers, self.models, self.scales)

    @property
    def score_names(self) -> tuple[str, ...]:
        """Names of the rows of :meth:`layer_scores`: the layers, then ``"reference: <name>"`` if any."""
        extra = () if self.discriminator is None else (f"reference: {self.discriminator.reference}",)
        return (*self.layers, *extra)

    def layer_scores(self, features: list[np.ndarray]) -> np.ndarray:
        """(L, N) distances divided by each layer's scale, from per-layer (N, D_l) features; with a
        discriminator, (L + 1, N), its scaled score last."""
        if len(features) != len(self.models):
            raise ValueError(f"expected features of {len(self.models)} layers, got {len(features)}")
        rows = [m.score(f) / s for m, f, s in zip(self.models, features, self.scales, strict=True)]
        if self.discriminator is not None:
            rows.append(self.discriminator.score(features) / self.discriminator_scale)
        return np.stack(rows)

    def score(self, features: list[np.ndarray]) -> np.ndarray:
        """(N,) out-of-distribution score, >= 0: the largest scaled layer distance (or discriminator score)."""
        return self.layer_scores(features).max(axis=0)

    def discriminator_dict(self) -> dict[str, Any] | None:
        """JSON-ready ``{"scale", "model"}`` of the discriminator, or None."""
        if self.discriminator is None:
            return None
        return {"scale": float(self.discriminator_scale), "model": self.discriminator.to_dict()}

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready list of ``{"layer", "feature_dim", "scale", "model"}``, one per layer."""
        return [{"layer": n, "feature_dim": m.feature_dim, "scale": float(s), "model": m.to_dict()}
                for n, m, s in zip(self.layers, self.models, self.scales, strict=True)]

    @classmethod
    def from_dict(cls, d: Any, discriminator: Any = None) -> LayeredDistribution:
        """Parse :meth:`to_dict` output (and :meth:`discriminator_dict` output, when given and not None);
        raises :class:`SpecError` when malformed."""
        if not isinstance(d, list) or not d or not all(isinstance(x, dict) for x in d):
            raise SpecError("The gate's layers are not a non-empty list of objects.")
        try:
            scales = np.array([float(x["scale"]) for x in d])
            names = tuple(str(x["layer"]) for x in d)
        except (KeyError, TypeError, ValueError) as err:
            raise SpecError("A gate layer has no valid name or scale.") from err
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise SpecError("The gate's layer scales must be positive.")
        models = tuple(DistributionModel.from_dict(x.get("model")) for x in d)
        if discriminator is None:
            return cls(names, models, scales)
        if not isinstance(discriminator, dict):
            raise SpecError("The gate's reference discriminator is not a JSON object.")
        disc = ReferenceDiscriminator.from_dict(discriminator.get("model"))
        try:
            disc_scale = float(discriminator["scale"])
        except (KeyError, TypeError, ValueError) as err:
            raise SpecError("The gate's reference discriminator has no valid scale.") from err
        if not (math.isfinite(disc_scale) and disc_scale > 0):
            raise SpecError("The gate's reference discriminator scale must be positive.")
        if disc.feature_dim != sum(m.feature_dim for m in models):
            raise SpecError("The gate's reference discriminator does not match the sizes of its layers.")
        return cls(names, models, scales, disc, disc_scale)
