"""The in-memory image type that every loader returns.

No torch and no Streamlit here: this module is the boundary between bytes and pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Window", "Overlay", "MedicalImage", "apply_window", "full_range_window", "BURNED_IN_STATES"]

#: Values of :attr:`MedicalImage.burned_in`: what is known about identifying text drawn in the pixels.
BURNED_IN_STATES: tuple[str, ...] = ("yes", "likely", "unknown", "no")


@dataclass(frozen=True)
class Window:
    """A VOI window (display window) in the image's modality units.

    Parameters
    ----------
    center : float
        Window Center (0028,1050), in modality units (e.g. HU for CT after the Modality LUT).
    width : float
        Window Width (0028,1051), in modality units; must be >= 1 (PS3.3 C.11.2.1.2).
    name : str
        Human-readable name, e.g. ``"header 1"``, ``"lung"``, ``"full range"``.
    function : {"LINEAR", "LINEAR_EXACT", "SIGMOID"}
        VOI LUT Function (0028,1056); PS3.3 C.11.2.1.2.1 / C.11.2.1.3.
    lut : tuple of (first_mapped, bits, table) or None
        A VOI LUT Sequence (0028,3010) item instead of a linear window: ``first_mapped`` is the first
        input value mapped (LUT Descriptor (0028,3002) value 2), ``bits`` the bits per output entry
        (descriptor value 3) and ``table`` a 1-D float32 ndarray of output values. When given, ``center``
        and ``width`` only describe the LUT's input range for the UI.
    """

    center: float
    width: float
    name: str = "default"
    function: str = "LINEAR"
    lut: tuple[int, int, np.ndarray] | None = field(default=None, compare=False)


def apply_window(
    pixels: np.ndarray, window: Window, invert: bool = False
) -> np.ndarray:
    """Map modality values through a VOI window (or VOI LUT) to display values in [0, 1].

    Parameters
    ----------
    pixels : (H, W) or (H, W, 3) float32 ndarray
        Values in modality units (after the Modality LUT).
    window : Window
        The VOI transform to apply.
    invert : bool
        True for MONOCHROME1 or Presentation LUT Shape (2050,0020) ``INVERSE``: after the VOI transform,
        1 becomes 0 (PS3.3 C.7.6.3.1.2, C.11.6).

    Returns
    -------
    (H, W) or (H, W, 3) float32 ndarray in [0, 1]
        New array; ``pixels`` is not modified.

    Notes
    -----
    LINEAR follows PS3.3 C.11.2.1.2.1 (the ``c - 0.5`` / ``w - 1`` form), LINEAR_EXACT C.11.2.1.3.2 and
    SIGMOID C.11.2.1.3.1, all scaled to an output range of [0, 1].
    """
    x = np.asarray(pixels, dtype=np.float32)
    if window.lut is not None:
        first, bits, table = window.lut
        table = np.asarray(table, dtype=np.float32)
        idx = np.clip(np.rint(x - first), 0, len(table) - 1).astype(np.intp)
        out = table[idx] / float(2**bits - 1)
    else:
        c, w = float(window.center), max(float(window.width), 1.0)
        fn = window.function.upper()
        if fn == "SIGMOID":
            out = 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
        elif fn == "LINEAR_EXACT":
            out = (x - c) / w + 0.5
        else:  # LINEAR
            w1 = max(w - 1.0, 1.0)
            out = (x - (c - 0.5)) / w1 + 0.5
    out = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
    if invert:
        out = 1.0 - out
    return out


@dataclass(frozen=True)
class Overlay:
    """One overlay plane (60xx group) of a DICOM image, for drawing over the displayed frame.

    Attributes
    ----------
    group : int
        The overlay's repeating group, 0x6000 .. 0x601E (PS3.3 C.9.2).
    mask : (H, W) bool ndarray
        The overlay bits (Overlay Data (60xx,3000)) already placed on the image grid: Overlay Origin
        (60xx,0050) applied and clipped to the image's Rows x Columns.
    kind : str
        Overlay Type (60xx,0040): ``"G"`` (graphics) or ``"R"`` (region of interest).

    Notes
    -----
    Overlay Description (60xx,0022) and Overlay Label (60xx,1500) are free text and are never kept (they can
    hold identifying text); the bits themselves may show annotations and are drawn only on request.
    """

    group: int
    mask: np.ndarray
    kind: str = "G"


@dataclass(frozen=True)
class MedicalImage:
    """One decoded image (one frame), ready for display and preprocessing.

    Attributes
    ----------
    pixels : (H, W) or (H, W, 3) float32 ndarray
        The selected frame in modality units: HU for CT after Rescale Slope/Intercept (0028,1053)/(0028,1052)
        (or the Pixel Value Transformation Sequence (0028,9145) of Enhanced CT), rescaled or stored values for
        other DICOMs, 0..255 or 0..65535 for raster images. Colour images (RGB, YBR, PALETTE COLOR) are RGB
        in their stored range (0..2**BitsStored - 1, or the palette's 8/16-bit range). Always a new array,
        never a view on the uploaded bytes.
    format : str
        What the content was sniffed as: ``"dicom"``, ``"png"``, ``"jpeg"``, ``"tiff"``, ``"gif"``, ``"bmp"``.
    photometric : str
        Photometric Interpretation (0028,0004) after decoding: ``"MONOCHROME1"``, ``"MONOCHROME2"`` or ``"RGB"``.
    windows : tuple of Window
        Display presets; the first is the default (from the header when there is one).
    invert : bool
        Whether display inverts after the VOI transform (MONOCHROME1 or Presentation LUT Shape INVERSE).
    units : str
        ``"HU"`` for CT with a rescale; for other DICOMs the Rescale Type (0028,1054) when it names one (e.g.
        ``"OD"``), ``"rescaled value"`` for an unnamed non-identity rescale or Modality LUT, else
        ``"stored value"``; ``"N-bit"`` for colour DICOMs; ``"8-bit"``, ``"16-bit"``, ``"32-bit"`` or
        ``"float"`` for raster images.
    frame_index, n_frames : int
        Which frame ``pixels`` is (0-based) and how many the file holds.
    metadata : dict of str to str
        Allowlisted, non-identifying attributes (modality, body part, view, spacing, ...).
    withheld : dict of str to int
        Count of attributes not shown, per category (patient identity, dates, institution, UIDs, ...).
    notes : tuple of str
        Things the user should know about the decode, safe to show (no patient data): e.g.
        "Burned In Annotation: YES — the pixels may show patient-identifying text", lossy compression,
        "EXIF orientation applied", a header window that was ignored or not used as the default.
    display_warnings : tuple of str
        Notes (also in ``notes``) that change how the image must be read and are shown beside the image, not
        in a collapsed panel: a header window that would show a blank frame, a negative rendition, identifying
        text in the pixels.
    burned_in : {"yes", "likely", "unknown", "no"}
        Identifying text in the pixels: ``"yes"`` when Burned In Annotation (0028,0301) is YES; ``"likely"``
        for ultrasound, secondary capture, endoscopy, photographs and similar images without a "NO"; ``"no"``
        only when the header says NO; ``"unknown"`` otherwise (raster files, other DICOMs without the
        attribute). Only ``"no"`` means the header vouches that the pixels carry no identifying text.
    overlays : tuple of Overlay
        Overlay planes (60xx) of this frame, on the image grid.
    patient_age_years : int or None
        Patient's Age (0010,1010) in whole years (days, weeks and months converted, capped at 90 so that ages
        over 89 are one band, as the HIPAA Safe Harbor rule requires); None when absent or unreadable. Used by
        :mod:`medimg.header_checks` only; never shown.
    negative : bool
        True when the header's own attributes say the rendition is a negative: a projection radiograph whose
        Pixel Intensity Relationship Sign (0028,1041) contradicts its Photometric Interpretation (see
        :func:`medimg.io.dicom.load_dicom`). ``invert`` still follows the Photometric Interpretation, as a
        PACS does; viewers may offer an inverted display.
    """

    pixels: np.ndarray
    format: str
    photometric: str = "MONOCHROME2"
    windows: tuple[Window, ...] = ()
    invert: bool = False
    units: str = "stored value"
    frame_index: int = 0
    n_frames: int = 1
    metadata: dict[str, str] = field(default_factory=dict)
    withheld: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    display_warnings: tuple[str, ...] = ()
    burned_in: str = "unknown"
    overlays: tuple[Overlay, ...] = ()
    patient_age_years: int | None = None
    negative: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``pixels``: (rows, columns) or (rows, columns, 3)."""
        return tuple(self.pixels.shape)

    @property
    def is_color(self) -> bool:
        """True when ``pixels`` has a trailing channel axis of 3."""
        return self.pixels.ndim == 3

    @property
    def default_window(self) -> Window:
        """The first window preset, or the full value range when there is none."""
        if self.windows:
            return self.windows[0]
        return full_range_window(self.pixels)

    def display(self, window: Window | None = None, max_side: int | None = None) -> np.ndarray:
        """Display image in [0, 1]: VOI window then MONOCHROME1 inversion.

        Parameters
        ----------
        window : Window, optional
            Defaults to :attr:`default_window`.
        max_side : int, optional
            Longest side wanted (what a screen shows). A larger image is first reduced by whole k x k blocks
            (mean of the modality values, ``k = ceil(longest side / max_side)``), a strip at a time, then
            windowed: the full-size display image (144 MB for a 6000 x 6000 radiograph) is never made.

        Returns
        -------
        (H, W) or (H, W, 3) float32 ndarray in [0, 1]
            ``(ceil(H / k), ceil(W / k))`` when reduced (:meth:`display_step` gives k).
        """
        win = window or self.default_window
        k = self.display_step(max_side)
        if k == 1:
            return apply_window(self.pixels, win, invert=self.invert)
        return apply_window(block_mean(self.pixels, k), win, invert=self.invert)

    def display_step(self, max_side: int | None) -> int:
        """The block size k that :meth:`display` reduces by for ``max_side`` (1: full resolution)."""
        if not max_side:
            return 1
        return max(1, -(-max(self.pixels.shape[:2]) // int(max_side)))


def block_mean(x: np.ndarray, k: int, strip_values: int = 4 * 2**20) -> np.ndarray:
    """Mean of k x k blocks (the last, partial blocks averaged over what they hold), a strip of rows at a time.

    Parameters
    ----------
    x : (H, W) or (H, W, C) float ndarray
    k : int >= 1
    strip_values : int
        Values of ``x`` converted at a time (bounds the temporary memory).

    Returns
    -------
    (ceil(H / k), ceil(W / k)[, C]) float32 ndarray
    """
    h, w = x.shape[:2]
    extra = x.shape[2:]
    oh, ow = -(-h // k), -(-w // k)
    out = np.empty((oh, ow, *extra), dtype=np.float32)
    per = max(1, strip_values // max(1, k * w * (extra[0] if extra else 1)))
    cols_full = (w // k) * k
    for i in range(0, oh, per):
        j = min(oh, i + per)
        rows = np.asarray(x[i * k : j * k], dtype=np.float32)
        n = rows.shape[0]
        pad_r = (j - i) * k - n
        if pad_r:  # the last partial block row: repeat its last row (the mean of what it holds)
            rows = np.concatenate([rows, np.repeat(rows[-1:], pad_r, axis=0)])
        full = rows[:, :cols_full].reshape(j - i, k, cols_full // k, k, *extra).mean(axis=(1, 3))
        out[i:j, : cols_full // k] = full
        if cols_full < w:
            out[i:j, cols_full // k] = rows[:, cols_full:].reshape(j - i, k, w - cols_full, *extra).mean(axis=(1, 2))
    return out


def full_range_window(pixels: np.ndarray, name: str = "full range") -> Window:
    """A LINEAR_EXACT window spanning the min..max of ``pixels`` (width at least 1).

    Parameters
    ----------
    pixels : (H, W) or (H, W, 3) float ndarray
        Finite values in modality units (NaN is ignored).
    name : str
        The preset's name shown to the user.

    Returns
    -------
    Window
        ``center = min + width / 2``, ``width = max(max - min, 1)``, function ``"LINEAR_EXACT"`` (PS3.3
        C.11.2.1.3.2), so that min maps to 0 and max to 1.
    """
    lo = float(np.nanmin(pixels)) if pixels.size else 0.0
    hi = float(np.nanmax(pixels)) if pixels.size else 1.0
    width = max(hi - lo, 1.0)
    return Window(center=lo + width / 2.0, width=width, name=name, function="LINEAR_EXACT")
