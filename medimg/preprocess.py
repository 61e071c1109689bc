"""The named, visible steps from a :class:`MedicalImage` to the model input. numpy/scikit-image only.

The same :func:`run` is used by training (:mod:`medimg.data`), evaluation and the app, so what a clinician sees
under "what the network saw" is exactly what the network was trained on.

Steps (each keeps its intermediate image for display):

1. ``window``    modality units -> [0, 1] through the display window (VOI LUT), MONOCHROME1 inverted.
2. ``channels``  to the model's channel count (RGB -> gray by ITU-R BT.601 luma, gray -> RGB by repetition).
3. ``geometry``  to the model's input size by the spec's crop/resize policy (anti-aliased bilinear); with
   ``roi="foreground"`` only the bounding box of the largest bright component is seen (:func:`foreground_box`).
4. ``intensity`` optional extra scaling (percentile stretch or CLAHE).
5. ``normalise`` ``(x - mean) / std`` per channel -> the float32 model input (not in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from medimg.errors import PreprocessError
from medimg.io.image import MedicalImage, Window, apply_window, full_range_window
from medimg.spec import GEOMETRIES, PreprocessConfig, parse_hu_window

__all__ = ["Step", "Preprocessed", "Geometry", "run", "normalise", "normalise_batch", "foreground_box", "MIN_INPUT_SIDE",
           "PREVIEW_SIDE", "FOREGROUND_LEVEL"]

#: Images with fewer rows or columns than this are refused (nothing to see at model scale).
MIN_INPUT_SIDE = 16
#: Longest side of the previews kept for the full-size steps (``window``, ``channels``).
PREVIEW_SIDE = 1024
#: Values (rows x columns x channels) of the original-size image processed at a time in :meth:`Geometry.forward`.
STRIP_VALUES = 4 * 2**20
#: Display value (in [0, 1], after the model's window) above which a pixel is foreground in :func:`foreground_box`.
FOREGROUND_LEVEL = 0.1
#: The largest component must cover at least this fraction of the image, else :func:`foreground_box` keeps it all.
FOREGROUND_MIN_FRACTION = 0.02
#: Margin added around the foreground box on each side, as a fraction of its longer side.
FOREGROUND_MARGIN = 0.03


@dataclass(frozen=True)
class Step:
    """One preprocessing step and the image it produced.

    Attributes
    ----------
    name : str
        ``"window"``, ``"channels"``, ``"geometry"``, ``"intensity"`` or ``"normalise"``.
    description : str
        What was done, with the parameters, for display.
    image : (h, w, C) float32 ndarray
        Output of the step; in [0, 1] for every step but ``normalise``. For steps at the original size
        (``window``, ``channels``) it is a preview of at most :data:`PREVIEW_SIDE` pixels on the long side
        (every k-th pixel): the full-size intermediate is never kept (memory contract of RELIABILITY.md).
    shape : (int, int), optional
        (rows, columns) of the step's real output when ``image`` is a preview.
    """

    name: str
    description: str
    image: np.ndarray
    shape: tuple[int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(rows, columns) of the step's output (not of the preview)."""
        return self.shape if self.shape is not None else (int(self.image.shape[0]), int(self.image.shape[1]))


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
    geometry : Geometry or None
        The geometry step (its :meth:`Geometry.inverse` maps a heat map back onto the original image).
    """

    steps: tuple[Step, ...]
    image: np.ndarray
    model_input: np.ndarray
    geometry: Geometry | None = None


def _select_window(image: MedicalImage, config: PreprocessConfig, window: Window | None) -> Window:
    if window is not None:
        return window
    if config.window == "full range":
        return full_range_window(image.pixels)
    hu = parse_hu_window(config.window)
    if hu is not None and image.units == "HU":
        return Window(hu[0], hu[1], f"model window {hu[0]:g}/{hu[1]:g} HU", "LINEAR")
    return image.default_window


def foreground_box(display: np.ndarray, stride: int = 1,
                   shape: tuple[int, int] | None = None) -> tuple[int, int, int, int] | None:
    """Bounding box of the largest bright component of a displayed image (the head on a CT slice).

    Pixels above :data:`FOREGROUND_LEVEL` are foreground; a binary opening with a disk of radius 1 % of the long
    side cuts thin structures (a head rest's arcs, burnt-in letters, the CT table's edge) off the body; the largest
    connected component (8-connectivity) is kept and its box widened by :data:`FOREGROUND_MARGIN` of its long side.

    Parameters
    ----------
    display : (h, w) or (h, w, C) float ndarray in [0, 1]
        The image through the model's window, possibly a preview taking every ``stride``-th pixel.
    stride : int
        Sampling step of ``display`` in the original image.
    shape : (int, int), optional
        (rows, columns) of the original image (default: ``display``'s own shape times ``stride``).

    Returns
    -------
    (r0, r1, c0, c1) tuple of int, or None
        Half-open rows ``r0:r1`` and columns ``c0:c1`` in original pixels, inside ``shape``; None when no
        component covers :data:`FOREGROUND_MIN_FRACTION` of the image (then the whole image is used).
    """
    from scipy import ndimage
    from skimage.morphology import disk

    g = np.asarray(display, dtype=np.float32)
    if g.ndim == 3:
        g = g.mean(axis=2)
    rows, cols = shape if shape is not None else (g.shape[0] * stride, g.shape[1] * stride)
    radius = max(1, int(round(0.01 * max(g.shape))))
    mask = ndimage.binary_opening(g > FOREGROUND_LEVEL, structure=disk(radius))
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.max() < FOREGROUND_MIN_FRACTION * g.size:
        return None
    comp = labels == int(sizes.argmax()) + 1
    rr, cc = np.flatnonzero(comp.any(axis=1)), np.flatnonzero(comp.any(axis=0))
    r0, r1, c0, c1 = (int(v) * stride for v in (rr[0], rr[-1] + 1, cc[0], cc[-1] + 1))
    m = int(round(FOREGROUND_MARGIN * max(r1 - r0, c1 - c0)))
    return max(0, r0 - m), min(rows, r1 + m), max(0, c0 - m), min(cols, c1 + m)


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


@dataclass(frozen=True)
class Geometry:
    """How an image of ``source`` rows x columns becomes the model input of ``target`` size, and back.

    The one definition of the spec's geometry policy: :meth:`forward` is the ``geometry`` step of :func:`run`,
    :meth:`inverse` maps a model-input-sized map (a heat map) back onto the original image.

    Attributes
    ----------
    source : (int, int)
        (rows, columns) of the image before the step.
    target : (int, int)
        (rows, columns) of the model input (``spec.preprocess.input_size``).
    policy : {"stretch", "pad", "crop"}
        ``stretch``: resized to ``target`` whatever the aspect ratio; ``pad``: centred on a zero canvas of the
        target's aspect ratio, then resized; ``crop``: the centred region of the target's aspect ratio, resized
        (the margins are not seen).
    box : (r0, r1, c0, c1) tuple of int, optional
        Region of interest (half-open rows and columns of the source, :func:`foreground_box`): the policy is
        applied to this region only; the rest of the image is not seen. None: the whole source.

    Raises
    ------
    PreprocessError
        Unknown policy, an empty size, or a box outside the source.
    """

    source: tuple[int, int]
    target: tuple[int, int]
    policy: str = "stretch"
    box: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.policy not in GEOMETRIES:
            raise PreprocessError(f"Unknown geometry policy {self.policy!r}; expected one of {', '.join(GEOMETRIES)}.")
        if min(*self.source, *self.target) < 1:
            raise PreprocessError(f"Empty geometry: {self.source} -> {self.target}.")
        if self.box is not None:
            r0, r1, c0, c1 = self.box
            if not (0 <= r0 < r1 <= self.source[0] and 0 <= c0 < c1 <= self.source[1]):
                raise PreprocessError(f"Region {self.box} is not inside a {self.source} image.")

    @property
    def region(self) -> tuple[int, int]:
        """(rows, columns) of the part of the source the policy applies to: the box, or the whole source."""
        if self.box is None:
            return self.source
        r0, r1, c0, c1 = self.box
        return r1 - r0, c1 - c0

    @property
    def canvas(self) -> tuple[int, int]:
        """(rows, columns) of the picture that is resized to ``target``: the padded canvas (``pad``), the crop
        (``crop``) or the region itself (``stretch``)."""
        rows, cols = self.region
        out_r, out_c = self.target
        if self.policy == "pad":
            return max(rows, int(round(cols * out_r / out_c))), max(cols, int(round(rows * out_c / out_r)))
        if self.policy == "crop":
            if rows / cols > out_r / out_c:
                return int(round(cols * out_r / out_c)), cols
            return rows, int(round(rows * out_c / out_r))
        return rows, cols

    @property
    def offset(self) -> tuple[int, int]:
        """(row, column) of the region's first pixel on the canvas (``pad``), or of the crop's first pixel in the
        region (``crop``); (0, 0) for ``stretch``."""
        (rows, cols), (side_r, side_c) = self.region, self.canvas
        if self.policy == "pad":
            return (side_r - rows) // 2, (side_c - cols) // 2
        if self.policy == "crop":
            return (rows - side_r) // 2, (cols - side_c) // 2
        return 0, 0

    def describe(self) -> str:
        """What the step does, with the sizes, for display."""
        how = {"pad": f"padded to aspect {self.target[0]}:{self.target[1]} with zeros, ",
               "crop": "centre-cropped to aspect, ",
               "stretch": "stretched (aspect ratio not kept, as in training), "}[self.policy]
        roi = ""
        if self.box is not None:
            r0, r1, c0, c1 = self.box
            roi = (f"cut to the foreground box (rows {r0}-{r1}, columns {c0}-{c1} of {self.source[0]}x"
                   f"{self.source[1]}), ")
        rows, cols = self.region
        return f"{roi}{how}resized {rows}x{cols} -> {self.target[0]}x{self.target[1]}"

    def forward(self, x: np.ndarray | Callable[[int, int], np.ndarray]) -> np.ndarray:
        """The ``geometry`` step: the source image at the model input size.

        Parameters
        ----------
        x : (rows, columns, C) float32 ndarray in [0, 1], or a callable ``(r0, r1) -> (r1 - r0, columns, C)``
            The source image (``rows, columns == source``; not modified), or a function giving its rows
            ``r0:r1``: then the image is produced and reduced a strip of rows at a time and never held whole
            (a 6000 x 6000 radiograph costs a few MB instead of 144 MB per copy).

        Returns
        -------
        (target rows, target columns, C) float32 ndarray in [0, 1]
            Area-averaged by whole blocks down to 2-4x the target (an exact box low-pass), then an anti-aliased
            bilinear resize (scikit-image), clipped to [0, 1].
        """
        rows, cols = self.region
        if callable(x):
            whole = x
        else:
            if tuple(x.shape[:2]) != self.source:
                raise PreprocessError(f"Geometry for {self.source} applied to an image of {x.shape[:2]}.")
            arr = x

            def whole(a: int, b: int) -> np.ndarray:
                return arr[a:b]
        if self.box is None:
            source = whole
        else:
            br0, _, bc0, bc1 = self.box

            def source(a: int, b: int) -> np.ndarray:  # rows a:b of the region
                return whole(a + br0, b + br0)[:, bc0:bc1]
        (r0, c0), (side_r, side_c) = self.offset, self.canvas

        def canvas_rows(a: int, b: int) -> np.ndarray:  # rows a:b of what is resized: canvas, crop or source
            if self.policy == "pad":
                s0, s1 = max(a - r0, 0), min(b - r0, rows)
                part = source(s0, s1) if s1 > s0 else None
                chans = part.shape[2] if part is not None else source(0, 1).shape[2]
                out = np.zeros((b - a, side_c, chans), dtype=np.float32)
                if part is not None:
                    out[s0 + r0 - a : s1 + r0 - a, c0 : c0 + cols] = part
                return out
            if self.policy == "crop":
                return source(a + r0, b + r0)[:, c0 : c0 + side_c]
            return source(a, b)

        out_r, out_c = self.target
        f_r, f_c = max(1, side_r // (2 * out_r)), max(1, side_c // (2 * out_c))
        if f_r > 1 or f_c > 1:
            # area-average by whole blocks down to 2-4x the target first (an exact box low-pass, ~10x faster on
            # a full-size radiograph than anti-aliasing the original), a strip of block rows at a time, then the
            # anti-aliased resize below
            r, c = (side_r // f_r) * f_r, (side_c // f_c) * f_c
            n_r = r // f_r
            per_strip = max(1, STRIP_VALUES // (f_r * side_c * 3))
            parts = []
            for i in range(0, n_r, per_strip):
                j = min(n_r, i + per_strip)
                block = canvas_rows(i * f_r, j * f_r)[:, :c]
                parts.append(block.reshape(j - i, f_r, c // f_c, f_c, block.shape[2]).mean(axis=(1, 3),
                                                                                          dtype=np.float32))
            small = np.concatenate(parts) if len(parts) > 1 else parts[0]
        else:
            small = np.asarray(canvas_rows(0, side_r), dtype=np.float32)
        if small.shape[:2] != (out_r, out_c):
            from skimage.transform import resize  # scikit-image (and scipy) load on first use, not at import

            small = resize(small, (out_r, out_c, small.shape[2]), order=1, anti_aliasing=True, preserve_range=True,
                           mode="edge").astype(np.float32)
        return np.clip(small, 0.0, 1.0)

    def inverse(self, m: np.ndarray) -> np.ndarray:
        """Map a model-input-sized map back onto the source image (the inverse of :meth:`forward`'s geometry).

        Parameters
        ----------
        m : (target rows, target columns) float ndarray in [0, 1]
            E.g. a CAM heat map; not modified.

        Returns
        -------
        (source rows, source columns) float32 ndarray in [0, 1]
            Bilinear (pixel centres aligned; anti-aliased when shrinking, as torch's ``interpolate(...,
            antialias=True)``, through Pillow); ``pad``: the canvas with the padding cut away; ``crop``: 0 over the
            margins the network did not see; with a ``box``, 0 outside it.
        """
        h = np.asarray(m, dtype=np.float32)
        if h.shape != self.target:
            raise PreprocessError(f"Expected a {self.target} map, got {h.shape}.")
        if self.box is not None:
            br0, br1, bc0, bc1 = self.box
            full = np.zeros(self.source, dtype=np.float32)
            full[br0:br1, bc0:bc1] = Geometry(self.region, self.target, self.policy).inverse(h)
            return full
        (rows, cols), (side_r, side_c), (r0, c0) = self.source, self.canvas, self.offset
        if self.policy == "pad":
            out = _bilinear(h, (side_r, side_c))[r0 : r0 + rows, c0 : c0 + cols]
        elif self.policy == "crop":
            out = np.zeros((rows, cols), dtype=np.float32)
            out[r0 : r0 + side_r, c0 : c0 + side_c] = _bilinear(h, (side_r, side_c))
        else:
            out = _bilinear(h, (rows, cols))
        return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def _bilinear(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (h, w) float32 map through Pillow (equal to torch's bilinear ``interpolate`` with
    ``align_corners=False``, anti-aliased when shrinking, to ~1e-5)."""
    if tuple(x.shape) == tuple(shape):
        return x.astype(np.float32, copy=True)
    img = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32), mode="F")
    return np.asarray(img.resize((int(shape[1]), int(shape[0])), Image.Resampling.BILINEAR), dtype=np.float32)


def _intensity(x: np.ndarray, mode: str) -> tuple[np.ndarray, str]:
    if mode == "percentile":
        lo, hi = np.percentile(x, [0.5, 99.5])
        if hi - lo < 1e-6:
            return x, "percentile stretch skipped (constant image)"
        return np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32), "0.5-99.5 percentile stretch"
    if mode == "equalize":
        from skimage import exposure

        out = np.stack([exposure.equalize_adapthist(x[..., c], clip_limit=0.01) for c in range(x.shape[2])], -1)
        return out.astype(np.float32), "CLAHE (clip limit 0.01)"
    return x, "none"


def normalise_batch(x: Any, config: PreprocessConfig) -> Any:
    """``(x - mean) / std`` per channel of a batch: the one place medimg normalises a model input.

    Parameters
    ----------
    x : (N, C, H, W) float32 ndarray or torch tensor in [0, 1]
        Preprocessed images (a tensor stays on its device; no torch import is needed here).
    config : PreprocessConfig
        ``mean`` and ``std``, one value per channel C.

    Returns
    -------
    (N, C, H, W) float32, same type as ``x``
    """
    if isinstance(x, np.ndarray):
        mean = np.asarray(config.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(config.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return ((x - mean) / std).astype(np.float32, copy=False)
    mean = x.new_tensor(config.mean).view(1, -1, 1, 1)  # a torch tensor: same dtype and device as x
    std = x.new_tensor(config.std).view(1, -1, 1, 1)
    return (x - mean) / std


def normalise(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] -> (C, H, W) float32 ``(x - mean) / std`` (the model input for one image;
    :func:`normalise_batch` of a batch of one)."""
    chw = np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(2, 0, 1))
    return np.ascontiguousarray(normalise_batch(chw[None], config)[0])


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
    rows, cols = int(pixels.shape[0]), int(pixels.shape[1])
    k = max(1, -(-max(rows, cols) // PREVIEW_SIDE))  # preview stride
    preview = apply_window(pixels[::k, ::k], win, invert=image.invert)
    inv = ", inverted (MONOCHROME1)" if image.invert else ""
    full = None if k == 1 else (rows, cols)
    steps.append(Step("window", f"{win.name}: center {win.center:g}, width {win.width:g} ({win.function}){inv}",
                      preview if preview.ndim == 3 else preview[..., None], full))
    chans, how = _to_channels(preview, config.in_chans)
    steps.append(Step("channels", how, chans, full))
    gray_repeated = chans.strides[2] == 0  # grayscale repeated: resize one channel, then copy (1/C of the work)

    def strip(a: int, b: int) -> np.ndarray:  # rows a:b through the window and the channel conversion
        y, _ = _to_channels(apply_window(pixels[a:b], win, invert=image.invert), config.in_chans)
        return np.ascontiguousarray(y[..., :1]) if gray_repeated else y

    box = None
    if config.roi == "foreground":  # found through the model's own window, whichever window the user feeds
        own = _select_window(image, config, None)
        box = foreground_box(preview if own == win else apply_window(pixels[::k, ::k], own, invert=image.invert),
                             stride=k, shape=(rows, cols))
    geometry = Geometry((rows, cols), tuple(config.input_size), config.geometry, box=box)
    x = geometry.forward(strip)
    if gray_repeated:
        x = np.repeat(x, config.in_chans, axis=2)
    steps.append(Step("geometry", geometry.describe(), x))
    x, how = _intensity(x, config.intensity)
    steps.append(Step("intensity", how, x))
    model_input = normalise(x, config)
    steps.append(Step("normalise", f"(x - {list(config.mean)}) / {list(config.std)}",
                      model_input.transpose(1, 2, 0)))
    return Preprocessed(steps=tuple(steps), image=x, model_input=model_input, geometry=geometry)
