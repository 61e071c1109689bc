"""The DICOM loader :func:`load_dicom`: one frame, from the header checks to a :class:`MedicalImage`.

:func:`_load` runs the steps in order: header and safety checks (:mod:`medimg.io.dicom.reading`); the pixel
description of the Image Pixel module (PS3.3 C.7.6.3: Rows, Columns, Bits Allocated/Stored, Samples per Pixel,
Photometric Interpretation, Planar Configuration); one frame decoded (:mod:`medimg.io.dicom.pixels`); the
photometric conversions (YBR to RGB, PS3.3 C.7.6.3.1.2; PALETTE COLOR through the Palette Color LUTs,
C.7.6.3.1.5); the Modality LUT and the display windows (:mod:`medimg.io.dicom.luts`; C.11.1, C.11.2, per frame
from the Multi-frame Functional Groups of Enhanced objects, C.7.6.16); MONOCHROME1 / Presentation LUT Shape
(2050,0020) inversion (C.11.6); and notes (Burned In Annotation (0028,0301), lossy compression).
:func:`load_dicom` guards it: pydicom silenced, warnings ignored while reading, and every unexpected error
turned into a medimg error that quotes no value.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from medimg.errors import ImageTooLargeError, MedimgError, UnsupportedFormatError
from medimg.io.dicom.annotations import age_years, burned_in_note, burned_in_state, is_negative, read_overlays
from medimg.io.dicom.common import _corrupt, _fg_item, _FrameOutOfRange, _get, _int
from medimg.io.dicom.luts import CT_PRESETS, _misses, _modality, _windows_from
from medimg.io.dicom.pixels import _check_fragments, _decode_frame, _native_length, _pixel_element
from medimg.io.dicom.privacy import _quiet_pydicom
from medimg.io.dicom.reading import _NATIVE, TRANSFER_SYNTAXES, _check_size, _read_header, _ts_name
from medimg.io.image import MedicalImage, Window, full_range_window
from medimg.io.metadata import clean_text, count_withheld, describe

_MONO = ("MONOCHROME1", "MONOCHROME2")
_COLOR_PI = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422")


def _load(data: bytes, frame: int | None) -> MedicalImage:
    header, buffer, pixel_pos, declared_ts, actual_ts, notes = _read_header(data)
    enhanced = "SharedFunctionalGroupsSequence" in header or "PerFrameFunctionalGroupsSequence" in header
    keyword, vr, value, value_start, undefined = _pixel_element(buffer, pixel_pos, actual_ts)

    rows = _int(header, "Rows", "(0028,0010)")
    cols = _int(header, "Columns", "(0028,0011)")
    bits = _int(header, "BitsAllocated", "(0028,0100)")
    spp = _int(header, "SamplesPerPixel", "(0028,0002)", 1)
    stored = _int(header, "BitsStored", "(0028,0101)", bits)
    pixrep = _int(header, "PixelRepresentation", "(0028,0103)", 0)
    planar = _int(header, "PlanarConfiguration", "(0028,0006)", 0)
    n_frames = _int(header, "NumberOfFrames", "(0028,0008)", 1)
    pi = str(_get(header, "PhotometricInterpretation", "") or "").strip().upper()
    if not pi:
        if spp != 1:
            raise _corrupt("The DICOM header has no Photometric Interpretation (0028,0004).")
        pi = "MONOCHROME2"
        notes.append("Photometric Interpretation (0028,0004) missing: read as MONOCHROME2.")

    if not (0 < rows <= 65535 and 0 < cols <= 65535):
        raise _corrupt(f"The DICOM header declares an image of {rows} x {cols} pixels (Rows/Columns (0028,0010)/"
                       "(0028,0011)), which is not valid.")
    if bits not in (1, 8, 16, 32, 64) or not 1 <= stored <= bits or pixrep not in (0, 1):
        raise _corrupt(f"The DICOM header's pixel description is inconsistent (Bits Allocated {bits}, Bits Stored "
                       f"{stored}, Pixel Representation {pixrep}; (0028,0100)/(0028,0101)/(0028,0103)).")
    if n_frames < 1:
        raise _corrupt(f"The DICOM header declares {n_frames} frames (Number of Frames (0028,0008)).")
    if spp in (1, 3) and (pi in _COLOR_PI) != (spp == 3) and pi in (*_MONO, "PALETTE COLOR", *_COLOR_PI):
        raise _corrupt(f"The DICOM header is inconsistent: Photometric Interpretation {clean_text(pi)[:20]} "
                       f"with {spp} sample(s) per pixel ((0028,0004)/(0028,0002)).")
    if spp == 1:
        if pi not in _MONO and pi != "PALETTE COLOR":
            raise UnsupportedFormatError(f"The DICOM Photometric Interpretation '{clean_text(pi)[:20]}' is not "
                                         "supported. Export it as MONOCHROME2 or RGB.")
    elif spp == 3:
        if pi not in _COLOR_PI:
            raise UnsupportedFormatError(f"The DICOM colour encoding '{clean_text(pi)[:20]}' is not supported. "
                                         "Export it as RGB.")
        if planar not in (0, 1):
            raise _corrupt(f"The DICOM Planar Configuration (0028,0006) is {planar}; only 0 or 1 are valid.")
    else:
        raise _corrupt(f"The DICOM header declares {spp} samples per pixel (0028,0002); only 1 or 3 are valid.")
    _check_size(rows, cols, spp, bits, n_frames)

    index = 0 if frame is None else frame
    if not 0 <= index < n_frames:
        raise _FrameOutOfRange(f"frame {index} is out of range: this DICOM has {n_frames} frame(s)")

    encapsulated = actual_ts not in _NATIVE
    if keyword != "PixelData":
        if encapsulated or bits not in (32, 64) or spp != 1:
            raise _corrupt("The DICOM float pixel data do not match the header.")
    if encapsulated:
        _check_fragments(buffer, value_start, None if undefined else value_start + len(value), n_frames)
    else:
        if undefined:
            raise _corrupt("The DICOM pixel data have an undefined length but are not compressed.")
        need = _native_length(rows, cols, spp, bits, n_frames, pi)
        if len(value) < need:
            raise _corrupt(
                f"The DICOM header and pixel data disagree: {n_frames} frame(s) of {rows} x {cols} x {spp} at "
                f"{bits} bits need {need:,} bytes but the file holds {len(value):,} (truncated or damaged)."
            )
        if len(value) > need + 1:
            notes.append("The pixel data hold more bytes than the header declares; the extra bytes were ignored.")
        value = value[: need + need % 2]  # keep the padding byte: 8-bit OW Big Endian data swap in 16-bit words

    opts: dict[str, Any] = {
        "rows": rows, "columns": cols, "samples_per_pixel": spp, "bits_allocated": bits, "bits_stored": stored,
        "pixel_representation": pixrep, "photometric_interpretation": pi, "number_of_frames": n_frames,
        "planar_configuration": planar, "pixel_keyword": keyword, "pixel_vr": vr,
        "correct_unused_bits": True, "as_rgb": True, "view_only": True, "allow_excess_frames": False,
    }
    if "ExtendedOffsetTable" in header and "ExtendedOffsetTableLengths" in header:
        opts["extended_offsets"] = (header.ExtendedOffsetTable, header.ExtendedOffsetTableLengths)
    try:
        if encapsulated:
            src: memoryview | io.BytesIO = io.BytesIO(buffer)
            src.seek(value_start)
        else:
            src = value
        arr, props = _decode_frame(src, actual_ts, index, opts)
    except MedimgError:
        raise
    except MemoryError:
        raise ImageTooLargeError("The DICOM image is too large to decode on this server.") from None
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException:  # decoders raise RuntimeError, ValueError ... and Rust plugins a pyo3 PanicException
        what = "compressed image data" if encapsulated else "pixel data"
        raise _corrupt(f"The DICOM {what} ({_ts_name(declared_ts)}) cannot be decoded: the code stream is "
                       "damaged or does not match the header.") from None
    expected = (rows, cols) if spp == 1 else (rows, cols, 3)
    if tuple(arr.shape) != expected:
        raise _corrupt("The decoded DICOM image does not have the size its header declares.")
    out_pi = str(props.get("photometric_interpretation", pi)).upper()

    invert = False
    negative = False
    display_warnings: list[str] = []
    modality = str(_get(header, "Modality", "") or "").strip().upper()
    windows: list[Window] = []
    extra: dict[str, object] = {"TransferSyntaxUID": _ts_name(declared_ts), "NumberOfFrames": n_frames,
                                "Rows": rows, "Columns": cols}
    if spp == 1 and pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            rgb = apply_color_lut(arr, header)
        except Exception:
            raise _corrupt("The DICOM palette colour lookup tables (0028,1101-1203) are missing or invalid.") from None
        if rgb.ndim != 3 or rgb.shape[:2] != (rows, cols) or rgb.shape[2] < 3:
            raise _corrupt("The DICOM palette colour lookup tables do not match the image.")
        top = 255.0 if rgb.dtype.itemsize == 1 else 65535.0
        pixels = np.ascontiguousarray(rgb[..., :3], dtype=np.float32)
        photometric, units = "RGB", "8-bit" if top == 255.0 else "16-bit"
        windows.append(Window(top / 2.0, top, f"stored range (0-{top:.0f})", "LINEAR_EXACT"))
    elif spp == 3:
        if out_pi in ("YBR_FULL", "YBR_FULL_422"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, out_pi, "RGB")
        elif out_pi not in ("RGB", "YBR_ICT", "YBR_RCT"):
            raise UnsupportedFormatError(f"The DICOM colour encoding '{clean_text(out_pi)[:20]}' could not be "
                                         "converted to RGB. Export it as RGB.")
        pixels = np.array(arr, dtype=np.float32)  # a copy: never a view on the upload
        top = float(2**stored - 1)
        photometric, units = "RGB", f"{stored}-bit"
        windows.append(Window(top / 2.0, top, f"stored range (0-{top:.0f})", "LINEAR_EXACT"))
    else:
        pixels = np.array(arr, dtype=np.float32)  # a copy: never a view on the upload
        del arr
        photometric = pi
        kind, slope, intercept, mlut, rtype = ("none", 1.0, 0.0, None, None)
        if keyword == "PixelData":
            kind, slope, intercept, mlut, rtype = _modality(header, index, enhanced)
        if kind == "lut" and mlut is not None:
            first, _bits, table = mlut
            idx = np.clip(np.rint(pixels - first), 0, len(table) - 1).astype(np.intp)
            pixels = table[idx]
            del idx
        elif kind == "rescale":
            if slope != 1.0:
                pixels *= np.float32(slope)
            if intercept != 0.0:
                pixels += np.float32(intercept)
            extra.update(RescaleSlope=slope, RescaleIntercept=intercept)
            if rtype:
                extra["RescaleType"] = rtype
        if kind == "none":
            units = "stored value"
        elif modality == "CT" and kind == "rescale" and (rtype or "HU").upper() in ("HU", "US"):
            units = "HU"
        elif rtype and rtype.upper() not in ("US",):
            units = rtype
        elif kind == "rescale" and slope == 1.0 and intercept == 0.0:
            units = "stored value"
        else:
            units = "rescaled value"
        # VOI: Frame VOI LUT Sequence (0028,9132) for Enhanced objects, else the top-level module
        voi_source = _fg_item(header, index, "FrameVOILUTSequence") if enhanced else None
        signed_lut = pixrep == 1 or (kind == "rescale" and intercept < 0)
        if voi_source is not None:
            windows.extend(_windows_from(voi_source, signed_lut, notes, ""))
        if not windows:
            windows.extend(_windows_from(header, signed_lut, notes, ""))
        has_header_windows = bool(windows)
        if not np.all(np.isfinite(pixels)):
            raise _corrupt("The DICOM pixel values are not finite after the Modality LUT.")
        full = full_range_window(pixels)
        if not has_header_windows:
            windows.append(full)
        elif windows[0].lut is None and _misses(windows[0], full):
            # a header window entirely outside the image's values shows a blank frame (a PACS that follows the
            # header, as IHE requires, shows exactly that): keep it selectable, but open on the full range
            hw = windows[0]
            lo, hi = full.center - full.width / 2.0, full.center + full.width / 2.0
            side = "white" if hw.center + hw.width / 2.0 <= lo else "black"
            if pi == "MONOCHROME1":
                side = "black" if side == "white" else "white"
            msg = (f"The header's display window (center {hw.center:g}, width {hw.width:g}) lies outside this "
                   f"image's values ({lo:g} to {hi:g} {units}, Pixel Representation "
                   f"{'signed' if pixrep else 'unsigned'}, Rescale Slope {slope:g}, Intercept {intercept:g}): "
                   f"a viewer that follows the header, as PACS viewers do, shows a blank {side} frame. medimg "
                   "opens on the full value range instead; the header window stays in the window list.")
            notes.append(msg)
            display_warnings.append(msg)
            windows.insert(0, full)
            has_header_windows = False
        if units == "HU":
            presets = [Window(c, w, name, "LINEAR") for name, c, w in CT_PRESETS]
            if has_header_windows:
                windows.extend(presets)
            else:  # no usable header window: CT opens on the soft-tissue preset, not the full range
                windows[:0] = presets
                windows.remove(full)
                has_header_windows = True
        if has_header_windows:
            windows.append(full)
        shape = str(_get(header, "PresentationLUTShape", "") or "").strip().upper()
        invert = pi == "MONOCHROME1" or shape == "INVERSE"
        negative = is_negative(header, pi)
        if negative:
            msg = ("This radiograph displays as a negative (lungs white, bone and mediastinum dark): its Pixel "
                   "Intensity Relationship Sign (0028,1041) says higher values are more X-ray at the detector, "
                   f"but its Photometric Interpretation is {pi}. A PACS shows it the same way; the viewer's "
                   "Invert button shows it conventionally. The network sees it as the header says.")
            notes.append(msg)
            display_warnings.append(msg)
        if enhanced:
            measures = _fg_item(header, index, "PixelMeasuresSequence")
            if measures is not None:
                for kw in ("PixelSpacing", "SliceThickness"):
                    v = _get(measures, kw)
                    if v is not None:
                        extra[kw] = v
    if not np.all(np.isfinite(pixels)):
        raise _corrupt("The DICOM pixel values are not finite.")

    burned_in = burned_in_state(header)
    burned_note = burned_in_note(header, burned_in)
    if burned_note is not None:
        notes.append(burned_note)
        display_warnings.append(burned_note)
    overlays = read_overlays(header, rows, cols, index)
    if overlays:
        notes.append(f"{len(overlays)} overlay plane(s) (60xx) are stored with this frame; the viewer draws them "
                     "when 'Overlays' is on.")
    lossy_flag = str(_get(header, "LossyImageCompression", "") or "").strip() == "01"
    if TRANSFER_SYNTAXES.get(declared_ts, ("", False))[1] or lossy_flag:
        notes.append("This image was lossy compressed: fine detail may differ from the original acquisition.")

    metadata = describe(header, extra)
    try:
        withheld = count_withheld(header)
    except Exception:  # pragma: no cover - count_withheld guards each element itself
        withheld = {"other": 1}
    return MedicalImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        format="dicom",
        photometric=photometric,
        windows=tuple(windows),
        invert=invert,
        units=units,
        frame_index=index,
        n_frames=n_frames,
        metadata=metadata,
        withheld=withheld,
        notes=tuple(dict.fromkeys(notes)),
        display_warnings=tuple(dict.fromkeys(display_warnings)),
        burned_in=burned_in,
        overlays=overlays,
        patient_age_years=age_years(header),
        negative=negative,
    )


def load_dicom(data: bytes | bytearray | memoryview, frame: int | None = None) -> MedicalImage:
    """Decode one frame of a DICOM file held in memory, with its display windows and de-identified metadata.

    Parameters
    ----------
    data : bytes-like
        The whole file: Part 10 (128-byte preamble + ``DICM``) or a raw data set without preamble that
        :func:`medimg.io.sniff.looks_like_raw_dicom` recognises. Never written to disk.
    frame : int, optional
        0-based frame of a multi-frame image (Number of Frames (0028,0008)); the first when None. Only this
        frame is decoded.

    Returns
    -------
    MedicalImage
        ``pixels``: (Rows, Columns) float32 ndarray in modality units after the Modality LUT -- HU for CT
        (Rescale Slope/Intercept (0028,1053)/(0028,1052), Pixel Value Transformation Sequence (0028,9145) for
        Enhanced CT), stored values when there is no rescale -- or (Rows, Columns, 3) float32 RGB for RGB,
        YBR (converted, PS3.3 C.7.6.3.1.2) and PALETTE COLOR (through the Palette Color LUTs, C.7.6.3.1.5).
        ``windows``: the header's VOI LUT Sequence (0028,3010) items and Window Center/Width (0028,1050)/
        (0028,1051) pairs (names from (0028,1055), function from VOI LUT Function (0028,1056)), per frame
        from the Frame VOI LUT Sequence (0028,9132) for Enhanced objects; then :data:`CT_PRESETS` for CT in
        HU; then the full value range (first when the header has no window). ``invert`` is True for
        MONOCHROME1 or Presentation LUT Shape (2050,0020) INVERSE. ``metadata``: allowlisted attributes
        (:data:`medimg.io.metadata.SHOWN`); ``withheld``: counts per category; ``notes``: e.g. Burned In
        Annotation (0028,0301) YES, lossy compression.

    Raises
    ------
    CompressionNotSupportedError
        Transfer Syntax UID (0002,0010) not in :data:`TRANSFER_SYNTAXES`, or its decoder is not installed.
    ImageTooLargeError
        Declared frame over :data:`medimg.io.raster.MAX_PIXELS` pixels, whole pixel data over
        :data:`MAX_DECODED_BYTES`, more than :data:`MAX_FRAMES` frames, or a deflated data set inflating past
        :data:`MAX_INFLATED_BYTES` -- all checked before decoding.
    CorruptFileError
        Truncated file, missing Pixel Data (7FE0,0010) or Rows/Columns/Bits Allocated, header/data length
        mismatch, damaged JPEG / JPEG-LS / JPEG 2000 / RLE code stream, invalid LUTs.
    UnsupportedFormatError
        Not DICOM at all, or a photometric interpretation medimg does not render.
    ValueError
        ``frame`` is negative or not below Number of Frames (a programming error, not bad input).

    References
    ----------
    DICOM PS3.3 C.7.6.3 (Image Pixel), C.11.1 (Modality LUT), C.11.2 (VOI LUT), C.11.6 (Presentation LUT),
    C.7.6.16 (Multi-frame Functional Groups); PS3.5 8 and A.4 (encapsulation); PS3.10 7.1 (file format).
    """
    _quiet_pydicom()
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise ValueError(f"frame must be an int or None, not {type(frame).__name__}")
    if frame is not None and frame < 0:
        raise ValueError(f"frame must be >= 0, got {frame}")
    data = bytes(data) if not isinstance(data, bytes) else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _load(data, None if frame is None else int(frame))
        except (MedimgError, _FrameOutOfRange):
            raise
        except MemoryError:
            raise ImageTooLargeError("The DICOM image is too large to decode on this server.") from None
        except RecursionError:
            raise _corrupt("The DICOM file nests sequences too deeply to be read.") from None
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException:  # includes pyo3 PanicException (a BaseException) from Rust-based plugins
            raise _corrupt("The DICOM file cannot be read: it is damaged or not a valid DICOM image.") from None
