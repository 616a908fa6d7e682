"""Near-duplicate images by perceptual hash, grouped so that a split keeps each group on one side.

The hash is the classic DCT "pHash": the image shrunk to 32x32 grey levels, its 8x8 lowest
spatial frequencies (without the constant term), one bit per coefficient above their median.
Re-encoding, mild resizing, brightness changes and small marks leave it within a few bits.
Ultrasound frames resemble each other more than photographs do: on BUSI, unrelated images are
mostly 14-22 bits apart, while pairs at 0-10 bits were, when looked at, the same lesion (one
frame twice, or neighbouring frames); the nearest-neighbour histogram has its valley at 10-12.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

HASH_SIZE = 8
NEAR_DUPLICATE_BITS = 10  # at most this many differing bits (of 63) count as the same image


def perceptual_hash(image: np.ndarray) -> int:
    """A 63-bit DCT perceptual hash of an HxW uint8 image."""
    small = cv2.resize(image.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:HASH_SIZE, :HASH_SIZE].flatten()[1:]  # without the mean brightness
    bits = low > np.median(low)
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_duplicate_groups(hashes: Sequence[int], max_bits: int = NEAR_DUPLICATE_BITS) -> list[int]:
    """For each image, the index of the first image of its group: images within ``max_bits`` of
    each other are joined, and so, transitively, are their neighbours (union-find)."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            if hamming(hashes[i], hashes[j]) <= max_bits:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(hashes))]
