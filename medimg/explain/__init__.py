"""Explanations: CAM heat maps (via pytorch-grad-cam), overlays, faithfulness and sanity checks for reviewers,
feature maps, filters and occlusion for teaching.

Heat maps are **relative** by default: min-max scaled per image, so 1 marks the most important region *of
this image* and two images' maps cannot be compared; ``scale="global"`` divides by a fixed ``vmax`` instead.
A map whose raw values are all equal (e.g. all-zero gradients) comes out all zero, never NaN.

Concurrency: the Predictor's model is shared by every app session and is never hooked or changed here. CAMs and
feature maps run on private replicas borrowed from a bounded pool (:mod:`medimg.explain.replicas`); hooks live
only for one call on one replica and are always released.

Main entry points
-----------------
- :func:`cam` -> :class:`CamResult` (``heatmap`` (H, W) at the model input size, ``heatmap_original(shape)``)
- :func:`cam_batch` (N, H, W) for evaluation, :func:`global_vmax` for a global scale
- :func:`overlay` (H, W, 3) colour blend, :func:`colormap_lut`
- :func:`deletion_insertion`, :func:`randomization_sanity` for reviewers
- :func:`layer_names`, :func:`first_layer_filters`, :func:`feature_maps`, :func:`occlusion` for educators
"""

from __future__ import annotations

from medimg.explain.faithfulness import deletion_insertion, randomization_sanity, randomized_copy, spearman
from medimg.explain.maps import CamResult, cam, cam_batch, global_vmax, to_original
from medimg.explain.methods import METHODS, method_name
from medimg.explain.overlay import colormap_lut, overlay
from medimg.explain.replicas import BusyError, ExplainError, ReplicaPool, hook_count, replica_pool
from medimg.explain.teaching import feature_maps, first_layer_filters, layer_names, occlusion

__all__ = ["METHODS", "CamResult", "cam", "cam_batch", "global_vmax", "overlay", "colormap_lut", "to_original",
           "method_name", "deletion_insertion", "randomization_sanity", "randomized_copy", "spearman",
           "feature_maps", "first_layer_filters", "layer_names", "occlusion", "hook_count", "replica_pool",
           "ReplicaPool", "ExplainError", "BusyError"]
