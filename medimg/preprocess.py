"""The named, visible steps from a :class:`MedicalImage` to the model input. numpy/scikit-image only.

The same :func:`run` is used by training (:mod:`medimg.data`), evaluation and the app, so what a clinician sees
under "what the network saw" is exactly what the network was trained on.

Steps (each keeps its intermediate image for display):

1. ``window``    modality units -> [0, 1] through the display window (VOI LUT), MONOCHROME1 inverted.
2. ``channels``  to the model's channel count (RGB -> gray by ITU-R BT.601 luma, gray -> RGB by repetition).
3. ``geometry``  to the model's input size by the spec's crop/resize policy (anti-aliased bilinear).
4. ``intensity`` optional extra scaling (percentile stretch or CLAHE).
5. ``normalise`` ``(x - mean) / std`` per channel -> the float32 model input (not in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage import exposure
from skimage.transform import resize

from medimg.errors import PreprocessError
from medimg.io.image import MedicalImage, Window, full_range_window
from medimg.spec import PreprocessConfig

__all__ = ["Step", "Preprocessed", "run", "normalise", "MIN_INPUT_SIDE"]

#: Images with fewer rows or columns than this are refused (nothing to see at model scale).
MIN_INPUT_SIDE = 16


@dataclass(frozen=True)
class Step:
    """One preprocessing step and the image it produced.

    Attributes
    ----------
    name : str
        ``"window"``, ``"channels"``, ``"geometry"``, ``"intensity"`` or ``"normalise"``.
    description : str
        What was done, with the parameters, for display.
    image : (H, W, C) float32 ndarray
        Output of the step; in [0, 1] for every step but ``normalise``.
    """

    name: str
    description: str
    image: np.ndarray


@dataclass(frozen=True)
class Preprocessed:
    """Result of :func:`run`.

    Attributes
    ----------
    steps : tuple of Step
    image : (H, W, C) float32 ndarray in [0, 1]
        The last [0, 1] image (before normalisation), at the model's input size.
    model_input : (C, H, W) float32 ndarray
        Normalised network input for one image (add the batch axis for the model).
    """

    steps: tuple[Step, ...]
    image: np.ndarray
    model_input: np.ndarray


def _select_window(image: MedicalImage, config: PreprocessConfig, window: Window | None) -> Window:
    if window is not None:
        return window
    if config.window == "full range":
        return full_range_window(image.pixels)
    return image.default_window


def _to_channels(x: np.ndarray, in_chans: int) -> tuple[np.ndarray, str]:
    """(H, W) or (H, W, 3) -> (H, W, in_chans)."""
    if x.ndim == 2:
        x = x[..., None]
    if x.shape[2] == in_chans:
        return x, f"kept {in_chans} channel(s)"
    if in_chans == 1:
        luma = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
        return luma[..., None].astype(np.float32), "RGB -> grayscale (ITU-R BT.601 luma)"
    # a read-only broadcast view: the copies are made after the resize (run), on the model-sized image
    return np.broadcast_to(x, (*x.shape[:2], in_chans)), f"grayscale repeated to {in_chans} channels"


def _geometry(x: np.ndarray, size: tuple[int, int], policy: str) -> tuple[np.ndarray, str]:
    rows, cols = x.shape[:2]
    out_r, out_c = size
    if policy == "pad":
        side_r, side_c = max(rows, int(round(cols * out_r / out_c))), max(cols, int(round(rows * out_c / out_r)))
        canvas = np.zeros((side_r, side_c, x.shape[2]), dtype=np.float32)
        r0, c0 = (side_r - rows) // 2, (side_c - cols) // 2
        canvas[r0 : r0 + rows, c0 : c0 + cols] = x
        x, how = canvas, f"padded to aspect {out_r}:{out_c} with zeros, "
    elif policy == "crop":
        target = out_r / out_c
        if rows / cols > target:
            keep = int(round(cols * target))
            r0 = (rows - keep) // 2
            x = x[r0 : r0 + keep]
        else:
            keep = int(round(rows / target))
            c0 = (cols - keep) // 2
            x = x[:, c0 : c0 + keep]
        how = "centre-cropped to aspect, "
    else:
        how = "stretched (aspect ratio not kept, as in training), "
    f_r, f_c = max(1, x.shape[0] // (2 * out_r)), max(1, x.shape[1] // (2 * out_c))
    if f_r > 1 or f_c > 1:
        # area-average by whole blocks down to 2-4x the target first (an exact box low-pass, ~10x faster on
        # a full-size radiograph than anti-aliasing the original), then the anti-aliased resize below
        r, c = (x.shape[0] // f_r) * f_r, (x.shape[1] // f_c) * f_c
        x = x[:r, :c].reshape(r // f_r, f_r, c // f_c, f_c, x.shape[2]).mean(axis=(1, 3), dtype=np.float32)
    if x.shape[:2] != (out_r, out_c):
        x = resize(x, (out_r, out_c, x.shape[2]), order=1, anti_aliasing=True, preserve_range=True,
                   mode="edge").astype(np.float32)
    return np.clip(x, 0.0, 1.0), f"{how}resized {rows}x{cols} -> {out_r}x{out_c}"


def _intensity(x: np.ndarray, mode: str) -> tuple[np.ndarray, str]:
    if mode == "percentile":
        lo, hi = np.percentile(x, [0.5, 99.5])
        if hi - lo < 1e-6:
            return x, "percentile stretch skipped (constant image)"
        return np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32), "0.5-99.5 percentile stretch"
    if mode == "equalize":
        out = np.stack([exposure.equalize_adapthist(x[..., c], clip_limit=0.01) for c in range(x.shape[2])], -1)
        return out.astype(np.float32), "CLAHE (clip limit 0.01)"
    return x, "none"


def normalise(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] -> (C, H, W) float32 ``(x - mean) / std`` (the model input for one image)."""
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    return np.ascontiguousarray(((image - mean) / std).transpose(2, 0, 1), dtype=np.float32)


def run(image: MedicalImage, config: PreprocessConfig, window: Window | None = None) -> Preprocessed:
    """Turn a MedicalImage into the model input, keeping every intermediate image.

    Parameters
    ----------
    image : MedicalImage
        Output of :func:`medimg.io.load_image`; not modified.
    config : PreprocessConfig
        The weights' ``spec.preprocess``.
    window : Window, optional
        Display window chosen by the user; by default the one ``config.window`` names. The network was
        trained with ``config.window``: another window changes what it sees (and the app says so).

    Returns
    -------
    Preprocessed
        ``image`` (H, W, C) float32 in [0, 1] at ``config.input_size``; ``model_input`` (C, H, W) float32.

    Raises
    ------
    PreprocessError
        Image smaller than :data:`MIN_INPUT_SIDE` on a side, or with non-finite values.
    """
    pixels = image.pixels
    if min(pixels.shape[:2]) < MIN_INPUT_SIDE:
        raise PreprocessError(
            f"The image is only {pixels.shape[0]} x {pixels.shape[1]} pixels; the model needs at least "
            f"{MIN_INPUT_SIDE} x {MIN_INPUT_SIDE}."
        )
    if not np.all(np.isfinite(pixels)):
        raise PreprocessError("The image holds non-finite values (NaN or infinity).")
    steps: list[Step] = []
    win = _select_window(image, config, window)
    x = image.display(win)
    inv = ", inverted (MONOCHROME1)" if image.invert else ""
    x3 = x if x.ndim == 3 else x[..., None]
    steps.append(Step("window", f"{win.name}: center {win.center:g}, width {win.width:g} ({win.function}){inv}", x3))
    x, how = _to_channels(x, config.in_chans)
    steps.append(Step("channels", how, x))
    if x.strides[2] == 0:  # grayscale repeated: resize one channel, then copy it (same result, 1/C of the work)
        x, how = _geometry(np.ascontiguousarray(x[..., :1]), config.input_size, config.geometry)
        x = np.repeat(x, config.in_chans, axis=2)
    else:
        x, how = _geometry(x, config.input_size, config.geometry)
    steps.append(Step("geometry", how, x))
    x, how = _intensity(x, config.intensity)
    steps.append(Step("intensity", how, x))
    model_input = normalise(x, config)
    steps.append(Step("normalise", f"(x - {list(config.mean)}) / {list(config.std)}",
                      model_input.transpose(1, 2, 0)))
    return Preprocessed(steps=tuple(steps), image=x, model_input=model_input)
