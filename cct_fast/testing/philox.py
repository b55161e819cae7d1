"""The attention dropout's mask in numpy, from the published Philox4x32-10 algorithm (Salmon
et al., SC'11): the independent check of the kernels' generator (``kernels/common/philox.h``).
Pure numpy, so the CUDA harness loads this file on a machine without TensorFlow."""

import numpy as np

MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
WEYL = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10


def philox(counters, key):
    """Philox4x32-10 of ``counters`` (..., 4) uint32 under ``key`` (two uint32): (..., 4)."""
    c = [np.asarray(counters[..., i], np.uint64) for i in range(4)]
    k0, k1 = (np.uint64(word) for word in key)
    mask = np.uint64(0xFFFFFFFF)
    for _ in range(ROUNDS):
        p0 = c[0] * np.uint64(MULTIPLIERS[0])
        p1 = c[2] * np.uint64(MULTIPLIERS[1])
        c = [
            (p1 >> np.uint64(32)) ^ c[1] ^ k0,
            p1 & mask,
            (p0 >> np.uint64(32)) ^ c[3] ^ k1,
            p0 & mask,
        ]
        k0 = (k0 + np.uint64(WEYL[0])) & mask
        k1 = (k1 + np.uint64(WEYL[1])) & mask
    return np.stack(c, axis=-1).astype(np.uint32)


def keep_threshold(keep):
    return min(int(np.float64(np.float32(keep)) * 2.0**32), 0xFFFFFFFF)


def dropout_mask(batch, heads, tokens, keep, seed):
    """The kept elements, (batch, heads, queries, keys) booleans: element (b, h, i, j) is kept
    iff word j % 4 of Philox((i, j // 4, b * heads + h, 0), seed) < keep * 2^32."""
    seed = [int(word) & 0xFFFFFFFF for word in seed]
    groups = (tokens + 3) // 4
    head, query, group = np.meshgrid(
        np.arange(batch * heads), np.arange(tokens), np.arange(groups), indexing="ij"
    )
    counters = np.stack([query, group, head, np.zeros_like(head)], axis=-1).astype(np.uint32)
    words = philox(counters, seed).reshape(batch * heads, tokens, groups * 4)[..., :tokens]
    return (words < keep_threshold(keep)).reshape(batch, heads, tokens, tokens)
