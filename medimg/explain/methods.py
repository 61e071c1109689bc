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
========== ======================================================================================= ============

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

__all__ = ["METHODS", "GRADIENT_FREE", "method_name"]


class _QuietScoreCAM(ScoreCAM):
    """Score-CAM (Wang et al. 2020) without the library's tqdm progress bar (no output on a server)."""

    batch_size = 32

    def get_cam_weights(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: list[Any],
                        activations: np.ndarray, grads: Any) -> np.ndarray:
        with torch.no_grad():
            act = torch.from_numpy(activations).to(self.device)  # (N, K, h, w)
            up = F.interpolate(act, size=tuple(input_tensor.shape[-2:]), mode="bilinear", align_corners=True)
            flat = up.flatten(2)
            lo, hi = flat.min(-1)[0][..., None, None], flat.max(-1)[0][..., None, None]
            up = (up - lo) / (hi - lo + 1e-8)  # each channel as a [0, 1] mask
            scores = []
            for target, x, masks in zip(targets, input_tensor.detach(), up, strict=True):
                s = []
                for i in range(0, masks.shape[0], self.batch_size):
                    s.append(target(self.model(x[None] * masks[i : i + self.batch_size, None])).float().cpu())
                scores.append(torch.cat(s))
            return torch.softmax(torch.stack(scores), dim=-1).numpy()


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
}
#: Methods that need no backward pass.
GRADIENT_FREE = frozenset({"eigencam", "scorecam"})
_ALIASES = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++", "gradcam+": "gradcam++"}


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
