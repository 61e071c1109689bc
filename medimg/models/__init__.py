"""Networks: the architecture registry (one descriptor per network) and safe weights I/O.

Public names: :func:`create_model`, :func:`list_models`, :func:`get_architecture`, :func:`feature_extractor`,
:class:`Architecture`, :func:`load_model`, :func:`save_weights`, :func:`load_state_dict_file`.
"""

from medimg.models.architectures import (
    DEFAULT_CAM_LAYER,
    PENULTIMATE,
    Architecture,
    SmallCNN,
    create_model,
    feature_extractor,
    get_architecture,
    list_models,
    register,
)
from medimg.models.weights import (
    MAX_HEADER_BYTES,
    MAX_WEIGHTS_BYTES,
    load_model,
    load_state_dict_file,
    save_weights,
    sha256_bytes,
)

__all__ = ["Architecture", "DEFAULT_CAM_LAYER", "PENULTIMATE", "SmallCNN", "create_model", "feature_extractor",
           "get_architecture", "list_models", "register", "MAX_HEADER_BYTES", "MAX_WEIGHTS_BYTES", "load_model",
           "load_state_dict_file", "save_weights", "sha256_bytes"]
