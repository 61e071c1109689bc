"""DICOM decoding with pydicom 3: safety checks first, then one frame, the Modality LUT and the VOI presets.

Order of operations (PS3.4 N.2, PS3.3 C.11): stored values -> Modality LUT (Rescale Slope/Intercept
(0028,1053)/(0028,1052) or Modality LUT Sequence (0028,3000)) -> ``MedicalImage.pixels`` in modality units;
VOI LUT Sequence (0028,3010) or Window Center/Width (0028,1050)/(0028,1051) -> ``MedicalImage.windows``;
MONOCHROME1 or Presentation LUT Shape (2050,0020) ``INVERSE`` -> ``MedicalImage.invert``. Enhanced multi-frame
objects keep these in the Shared / Per-frame Functional Groups Sequences (5200,9229)/(5200,9230): Pixel Value
Transformation Sequence (0028,9145) and Frame VOI LUT Sequence (0028,9132), read here per frame.

Before any pixel is decoded: the transfer syntax (0002,0010) must be on :data:`TRANSFER_SYNTAXES`, a Deflated
data set is inflated here with a cap (:data:`MAX_INFLATED_BYTES`; pydicom would inflate without limit), and the
declared Rows x Columns x Number of Frames x Samples x Bits Allocated must fit :data:`MAX_DECODED_BYTES` and the
per-frame :data:`medimg.io.raster.MAX_PIXELS`. Only the requested frame is decoded.

Privacy: pydicom's reading validation is set to IGNORE on import (its warnings quote element values, patient
names included, and are logged); warnings are silenced while reading; no value is ever logged or put in an
error message; error messages name the problem and the fix only.

The package (split by step; the names below are re-exported here, so ``medimg.io.dicom.X`` keeps working):

- :mod:`medimg.io.dicom.privacy` -- pydicom's reading validation and logging switched off; imported first.
- :mod:`medimg.io.dicom.common` -- the damaged-file error and tolerant attribute access, functional groups.
- :mod:`medimg.io.dicom.reading` -- allowlist, safety limits, header parsing, Deflate inflation, size checks.
- :mod:`medimg.io.dicom.pixels` -- the pixel data element, encapsulation check, decoding of one frame.
- :mod:`medimg.io.dicom.luts` -- Modality LUT, VOI LUT / windows, CT presets (PS3.3 C.11.1, C.11.2).
- :mod:`medimg.io.dicom.decode` -- :func:`load_dicom`: the steps in order, photometric conversions, inversion.
"""

from __future__ import annotations

from medimg.io.dicom import privacy as _privacy  # noqa: F401  (import-time pydicom silencing, before all else)
from medimg.io.dicom.decode import load_dicom
from medimg.io.dicom.luts import CT_PRESETS
from medimg.io.dicom.reading import MAX_DECODED_BYTES, MAX_FRAMES, MAX_INFLATED_BYTES, TRANSFER_SYNTAXES

__all__ = ["load_dicom", "TRANSFER_SYNTAXES", "CT_PRESETS", "MAX_DECODED_BYTES", "MAX_INFLATED_BYTES",
           "MAX_FRAMES"]
