"""The CAM methods offered, by name, as pytorch-grad-cam classes (two of them adapted for a server).

========== ======================================================================================= ============
name       map                                                                                     reference
========== ======================================================================================= ============
gradcam    ReLU(sum_k mean(dy/dA_k) * A_k)                                                         [1]_
hirescam   ReLU(sum_k dy/dA_k * A_k) (element-wise: provably reflects the logit for a GAP head)   [2]_
gradcam++  ReLU(sum_k w_k A_k), w_k from second/third-order gradient terms                         [3]_
xgradcam   ReLU(sum_k w_k A_k), w_k = sum(dy/dA_k * A_k) / sum(A_k)                               [4]_
layercam   ReLU(sum_k ReLU(dy/dA_k) * A_k)                                                         [5]_
eigencam   first principal component of the activations (class-agnostic, no gradients)             [6]_
scorecam   softmax of the class score of the image masked by each channel (one forward per channel) [7]_
ablationcam relative drop of the class score when each channel is zeroed at the layer               [8]_
========== ======================================================================================= ============

Eigen-CAM is **class-agnostic** (:data:`CLASS_AGNOSTIC`): it explains the activations, not a class, so the class
picker means nothing for it. Ablation-CAM zeroes one channel per copy of the layer's output and runs only the
rest of the network on the batch of copies (the layers before run once), so it costs one batched pass of the
network's tail rather than one forward pass per channel.

References
----------
.. [1] Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
   ICCV 2017.
.. [2] Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural
   networks", arXiv:2011.08891, 2020.
.. [3] Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Generalized Gradient-based Visual
   Explanations for Deep Convolutional Networks", WACV 2018.
.. [4] Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs", BMVC 2020.
.. [5] Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization", IEEE TIP 2021.
.. [6] Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020.
.. [7] Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
   CVPR Workshops 2020.
.. [8] Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free
   Localization", WACV 2020.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.base_cam import BaseCAM
from torch import nn

from medimg.explain.replicas import ExplainError

__all__ = ["METHODS", "GRADIENT_FREE", "CLASS_AGNOSTIC", "METHOD_LABELS", "method_name", "method_label"]


class _QuietScoreCAM(ScoreCAM):
    """Score-CAM (Wang et al. 2020) without the library's tqdm progress bar (no output on a server).

    ``max_channels`` (None = every channel, the method as published) keeps only the channels whose activation
    varies most over the image (the "Faster Score-CAM" shortcut of the Score-CAM authors' code); the others get
    weight 0. Callers that set it must say so next to the map.
    """

    batch_size = 32
    max_channels: int | None = None

    def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: list[Any],
                        activations: np.ndarray, grads: Any) -> np.ndarray:
        with torch.no_grad():
            act = torch.from_numpy(activations).to(self.device)  # (N, K, h, w)
            up = F.interpolate(act, size=tuple(input_tensor.shape[-2:]), mode="bilinear", align_corners=True)
            flat = up.flatten(2)
            lo, hi = flat.min(-1)[0][..., None, None], flat.max(-1)[0][..., None, None]
            up = (up - lo) / (hi - lo + 1e-8)  # each channel as a [0, 1] mask
            k = act.shape[1]
            keep = k if self.max_channels is None else max(1, min(k, int(self.max_channels)))
            out = np.zeros((act.shape[0], k), dtype=np.float32)
            for n, (target, x, masks) in enumerate(zip(targets, input_tensor.detach(), up, strict=True)):
                chosen = torch.arange(k) if keep == k else torch.topk(act[n].flatten(1).var(-1), keep).indices
                s = []
                for i in range(0, keep, self.batch_size):
                    idx = chosen[i : i + self.batch_size]
                    s.append(target(self.model(x[None] * masks[idx, None])).float().cpu())
                out[n, chosen.numpy()] = torch.softmax(torch.cat(s), dim=-1).numpy()
            return out


class _AblationCAM(BaseCAM):
    """Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y - y_k) / y``, ``y_k`` the class score with channel k of the
    layer's output set to zero.

    The layer's output of one image is replaced (by a forward hook on this private model) by a batch of copies,
    each with one channel zeroed, so the layers before the target run once and only the network's tail runs on
    the batch. This needs a network whose tail reads nothing computed before the target layer except through it
    (true for the stages of ResNet, DenseNet, EfficientNet, MobileNet, ConvNeXt and the teaching CNN).
    """

    batch_size = 512

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], reshape_transform: Any = None) -> None:
        super().__init__(model, target_layers, reshape_transform, uses_gradients=False)

    def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: list[Any],
                        activations: np.ndarray, grads: Any) -> np.ndarray:
        out = []
        with torch.no_grad():
            for target, x, act in zip(targets, input_tensor.detach(), activations, strict=True):
                a = torch.from_numpy(np.asarray(act, dtype=np.float32)).to(x.device)  # (K, h, w)
                k = a.shape[0]
                y = float(target(self.model(x[None])[0]))
                scores = []
                for i in range(0, k, self.batch_size):
                    n = min(self.batch_size, k - i)
                    batch = a[None].repeat(n, 1, 1, 1)  # (n, K, h, w)
                    batch[torch.arange(n), torch.arange(i, i + n)] = 0.0

                    def swap(_m: nn.Module, _i: Any, o: torch.Tensor, b: torch.Tensor = batch) -> torch.Tensor:
                        return b.to(o.dtype)

                    handle = target_layer.register_forward_hook(swap)
                    try:
                        logits = self.model(x[None])  # (n, K): the tail ran on the n ablated copies
                    finally:
                        handle.remove()
                    if logits.shape[0] != n:
                        raise ExplainError("Ablation-CAM cannot batch this layer: the network's tail does not "
                                           "follow the layer's output; choose another layer.")
                    scores.append(torch.stack([target(o) for o in logits]).float().cpu())
                yk = torch.cat(scores).numpy()
                out.append((y - yk) / (y if abs(y) > 1e-8 else 1e-8))
        return np.asarray(out, dtype=np.float32)


class _EigenCAM(EigenCAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): the activations' first principal component, computed from the
    (K, K) Gram matrix with ``torch.linalg.eigh`` in float64 instead of the library's numpy SVD (which can take
    seconds on a loaded multi-threaded OpenBLAS). The arbitrary sign of the component is fixed so that its
    largest-magnitude value is positive (the sign correction of Seg-Eigen-CAM, Chung & Ying 2025)."""

    def get_cam_image(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: Any,
                      activations: np.ndarray, grads: Any, eigen_smooth: bool) -> np.ndarray:
        out = []
        for act in np.nan_to_num(np.asarray(activations, dtype=np.float64)):  # (K, h, w)
            a = torch.from_numpy(act.reshape(act.shape[0], -1).T.copy())  # (h*w, K)
            a = a - a.mean(dim=0)
            _, vecs = torch.linalg.eigh(a.T @ a)
            proj = (a @ vecs[:, -1]).numpy()
            if abs(proj.min()) > abs(proj.max()):
                proj = -proj
            out.append(proj.reshape(act.shape[1:]))
        return np.asarray(out, dtype=np.float32)


#: Method name -> pytorch-grad-cam class. Score-CAM costs one forward pass per channel of the CAM layer.
METHODS: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "hirescam": HiResCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": _EigenCAM,
    "scorecam": _QuietScoreCAM,
    "ablationcam": _AblationCAM,
}
#: Methods that need no backward pass.
GRADIENT_FREE = frozenset({"eigencam", "scorecam", "ablationcam"})
#: Methods whose map does not depend on the class asked for (the class picker is disabled for them).
CLASS_AGNOSTIC = frozenset({"eigencam"})
#: Display names, in the order the saliency lab shows them.
METHOD_LABELS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "hirescam": "HiResCAM",
    "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
}
_ALIASES = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++", "gradcam+": "gradcam++",
            "ablation": "ablationcam"}


def method_name(method: str) -> str:
    """Canonical method name (case, ``-``, ``_`` and spaces ignored: ``"Grad-CAM++"`` -> ``"gradcam++"``).

    Raises
    ------
    ExplainError
        Unknown method.
    """
    key = str(method).lower().replace("-", "").replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise ExplainError(f"Unknown CAM method {method!r}; choose one of {', '.join(METHODS)}.")
    return key


def method_label(method: str) -> str:
    """Display name of a method (``"gradcam++"`` -> ``"Grad-CAM++"``).

    Raises
    ------
    ExplainError
        Unknown method.
    """
    return METHOD_LABELS[method_name(method)]
