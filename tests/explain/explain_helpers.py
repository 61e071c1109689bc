"""Helpers of the explain tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medimg.preprocess import Preprocessed, normalise
from medimg.spec import PreprocessConfig

#: Side of the planted-task images and of the square planted in class "square".
PLANT_SIZE = 32
PLANT_SIDE = 8


def make_pre(image: np.ndarray, config: PreprocessConfig) -> Preprocessed:
    """A Preprocessed for an (H, W) or (H, W, C) [0, 1] image already at the model input size."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    return Preprocessed(steps=(), image=img, model_input=normalise(img, config))


def make_planted(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(n, S, S) float32 images in [0, 1], labels (n,) alternating 0/1, top-left corners of the squares."""
    s, side = PLANT_SIZE, PLANT_SIDE
    x = np.clip(rng.normal(0.4, 0.1, (n, s, s)), 0, 1).astype(np.float32)
    y = np.arange(n) % 2
    boxes = []
    for i in range(n):
        r, c = (int(v) for v in rng.integers(2, s - side - 2, 2))
        boxes.append((r, c))
        if y[i]:
            x[i, r : r + side, c : c + side] = np.clip(x[i, r : r + side, c : c + side] + 0.3, 0, 1)
    return x, y, boxes


def in_box(rc: tuple[int, int], box: tuple[int, int], side: int = PLANT_SIDE) -> bool:
    """Whether pixel ``rc`` lies inside the square whose top-left corner is ``box``."""
    return box[0] <= rc[0] < box[0] + side and box[1] <= rc[1] < box[1] + side


@dataclass(frozen=True)
class Planted:
    """The trained planted-square model and a held-out set."""

    predictor: object
    images: np.ndarray  # (n, S, S) float32 in [0, 1]
    labels: np.ndarray  # (n,)
    boxes: list[tuple[int, int]]
    config: PreprocessConfig

    def positives(self, k: int) -> list[tuple[Preprocessed, tuple[int, int]]]:
        """The first ``k`` held-out images with a square, with their squares' corners."""
        idx = np.flatnonzero(self.labels == 1)[:k]
        return [(make_pre(self.images[i], self.config), self.boxes[i]) for i in idx]
