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
- :func:`deletion_insertion`, :func:`randomisation_sanity` for reviewers; :func:`method_grid` (every method on
  one image from one shared pass, with empty maps, coinciding methods and the map's grid reported),
  :func:`cam_layers`, :func:`faithfulness` (deletion/insertion beside random maps), :func:`sanity_check`
  (cascading randomisation with a verdict), :func:`mask_localisation` (pointing game over a split's masks)
- :func:`layer_names`, :func:`first_layer_filters`, :func:`feature_maps`, :func:`occlusion` for educators;
  :func:`layer_table` (shapes, parameters, receptive fields), :func:`stage_cams` (a map at every stage),
  :func:`occlude` (cover one region), :func:`what_if` (preprocessing changed, answer measured)
"""

from __future__ import annotations

from medimg.explain.cases import (
    CaseError,
    LocalisationReview,
    case_inputs,
    cases_available,
    has_masks,
    load_case,
    mask_localisation,
)
from medimg.explain.faithfulness import (
    SANITY_FAIL_RHO,
    Faithfulness,
    Sanity,
    deletion_insertion,
    faithfulness,
    randomisation_sanity,
    randomised_copy,
    sanity_check,
    spearman,
)
from medimg.explain.grid import (
    GRID_METHODS,
    GRID_SCALES,
    GridMap,
    LayerOption,
    MethodGrid,
    cam_layers,
    grid_vmax,
    method_grid,
)
from medimg.explain.maps import CamResult, cam, cam_batch, global_vmax, is_empty, to_original
from medimg.explain.methods import CLASS_AGNOSTIC, METHOD_LABELS, METHODS, method_label, method_name
from medimg.explain.overlay import colormap_lut, overlay
from medimg.explain.replicas import BusyError, ExplainError, ReplicaPool, hook_count, replica_pool
from medimg.explain.teaching import (
    LayerRow,
    StageCam,
    WhatIf,
    channel_order,
    feature_maps,
    first_layer_filters,
    layer_names,
    layer_table,
    occlude,
    occlusion,
    stage_cams,
    stage_layers,
    what_if,
)

__all__ = ["METHODS", "METHOD_LABELS", "CLASS_AGNOSTIC", "method_label", "is_empty", "GRID_METHODS", "GRID_SCALES",
           "GridMap", "LayerOption", "MethodGrid", "cam_layers", "grid_vmax", "method_grid", "Faithfulness",
           "faithfulness", "Sanity", "sanity_check", "SANITY_FAIL_RHO", "CaseError", "LocalisationReview",
           "case_inputs", "cases_available", "has_masks", "load_case", "mask_localisation", "CamResult", "cam", "cam_batch", "global_vmax", "overlay", "colormap_lut", "to_original",
           "method_name", "deletion_insertion", "randomisation_sanity", "randomised_copy", "spearman",
           "feature_maps", "first_layer_filters", "layer_names", "occlusion", "occlude", "channel_order", "layer_table",
           "LayerRow", "stage_layers", "stage_cams", "StageCam", "what_if", "WhatIf", "hook_count", "replica_pool",
           "ReplicaPool", "ExplainError", "BusyError"]
