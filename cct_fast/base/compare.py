"""How two computations of the same thing are compared: the largest difference relative to
the largest magnitude, so a tolerance means the same for logits, gradients and weights."""

import numpy as np


def relative_error(actual, expected) -> float:
    """``max|actual - expected| / max|expected|``, in float64."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"Cannot compare shapes {actual.shape} and {expected.shape}.")
    return float(
        np.abs(actual - expected).max(initial=0.0) / max(np.abs(expected).max(initial=0.0), 1e-12)
    )
