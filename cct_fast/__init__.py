"""cct_fast: Compact Transformers (CCT, CVT, ViT-Lite) in Keras 3, identical to the official code.

    import cct_fast
    model = cct_fast.create_model("cct_7_3x1_32", weights="cct_7_3x1_32_cifar10_300epochs.pth")
    cct_fast.list_models("cct_14*")
"""

from cct_fast.checkpoint import CheckpointError
from cct_fast.config import CCTConfig
from cct_fast.model import CCT
from cct_fast.weights import load_weights, save_weights
from cct_fast.zoo import *  # noqa: F403  (one function per official model name)
from cct_fast.zoo import MODEL_CONFIGS, create_model, list_models

__version__ = "0.1.0"
