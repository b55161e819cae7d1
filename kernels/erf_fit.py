"""Fits the rational erf of kernels/cpu/bias_gelu_isa.cc and prints its coefficients and error.

    python kernels/erf_fit.py

erf(x) ~ x P(x^2) / Q(x^2) on [0, 4], with P and Q of degree 5 and Q(0) = 1 (erf is odd, and is
1 in float32 beyond 4). The coefficients come from linearised least squares, x P - erf(x) Q = 0,
divided by the last Q (Loeb's iteration) and reweighted toward the largest errors (Lawson's), a
cheap road to a near-minimax fit. Prints the errors in float64 and evaluated as the kernel
evaluates it, in float32.
"""

import math

import numpy as np

DEGREE = 5
LIMIT = 4.0


def fit(iterations=30):
    x = np.linspace(0.0, LIMIT, 20001)
    target = np.array([math.erf(v) for v in x])
    u = x * x
    weights, q_values = np.ones_like(x), np.ones_like(x)
    powers = u[:, None] ** np.arange(DEGREE + 1)
    for _ in range(iterations):
        system = np.concatenate([x[:, None] * powers, -target[:, None] * powers[:, 1:]], axis=1)
        scale = weights / q_values
        solution, *_ = np.linalg.lstsq(system * scale[:, None], target * scale, rcond=None)
        p, q = solution[: DEGREE + 1], np.concatenate([[1.0], solution[DEGREE + 1 :]])
        q_values = powers @ q
        error = x * (powers @ p) / q_values - target
        weights = weights * np.sqrt(np.abs(error)) + 1e-30
        weights /= weights.max()
    return p, q, np.abs(error).max()


def float32_error(p, q):
    """The largest error of the kernel's float32 evaluation (Horner, clamped input)."""
    x = np.linspace(-1.2 * LIMIT, 1.2 * LIMIT, 200001).astype(np.float32)
    clamped = np.clip(x, -LIMIT, LIMIT)
    u = clamped * clamped
    numerator, denominator = np.float32(0.0), np.float32(0.0)
    for c in p[::-1].astype(np.float32):
        numerator = numerator * u + c
    for c in q[::-1].astype(np.float32):
        denominator = denominator * u + c
    values = clamped * numerator / denominator
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])
    return np.abs(values.astype(np.float64) - exact).max()


def main():
    p, q, error = fit()
    print("P (x^0 first):", ", ".join(f"{c:.9e}" for c in p))
    print("Q (x^0 first):", ", ".join(f"{c:.9e}" for c in q))
    print(f"max error: {error:.2e} in float64, {float32_error(p, q):.2e} in float32")


if __name__ == "__main__":
    main()
