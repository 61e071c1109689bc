"""Plotly figures for the app and reports. Every function returns a ``go.Figure`` and never shows it.

No torch and no Streamlit here: numpy, scikit-learn, Pillow and plotly only, so figures can be built in tests,
notebooks and the command line as well as in the app.

- :mod:`medimg.viz.base`: images, heat-map overlays, probabilities, confusion matrix, ROC / PR curves,
  reliability diagram, training log, preprocessing steps.
- :mod:`medimg.viz.review`: the reviewers' figures: the CAM method grid, deletion / insertion curves, operating
  points on ROC and PR curves, the screening ROC (negative vs abnormal), calibration before and after temperature
  scaling, case galleries.

``from medimg import viz`` then ``viz.<function>`` reaches every figure of both modules.
"""

from __future__ import annotations

from medimg.viz.base import (
    GLOBAL_SCALE_TITLE,
    RELATIVE_SCALE_TITLE,
    confusion_matrix_figure,
    heatmap_overlay_figure,
    image_figure,
    pr_figure,
    probability_bars,
    reliability_figure,
    roc_figure,
    steps_figure,
    to_uint8,
    training_curves_figure,
)
from medimg.viz.review import (
    calibration_figure,
    case_gallery_figure,
    cell_from_selection,
    deletion_insertion_figure,
    method_grid_figure,
    operating_point_figure,
    per_class_roc_figure,
    screening_roc_figure,
)

__all__ = [
    "RELATIVE_SCALE_TITLE",
    "GLOBAL_SCALE_TITLE",
    "image_figure",
    "heatmap_overlay_figure",
    "probability_bars",
    "confusion_matrix_figure",
    "roc_figure",
    "pr_figure",
    "reliability_figure",
    "training_curves_figure",
    "steps_figure",
    "to_uint8",
    "method_grid_figure",
    "deletion_insertion_figure",
    "operating_point_figure",
    "per_class_roc_figure",
    "screening_roc_figure",
    "calibration_figure",
    "case_gallery_figure",
    "cell_from_selection",
]
