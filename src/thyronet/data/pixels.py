"""Pixel conversions shared by the raster and DICOM readers: any bit depth or colour to 8-bit grey."""

from __future__ import annotations

import numpy as np


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale integer or float pixel data of any bit depth to 0..255 (min-max per image)."""
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros(array.shape, np.uint8)
    return np.round((array - low) * (255.0 / (high - low))).astype(np.uint8)


def to_grey(array: np.ndarray) -> np.ndarray:
    """HxW or HxWxC (grey+alpha, RGB, RGBA) -> HxW uint8; alpha is dropped (ultrasound has no transparency)."""
    if array.ndim == 3:
        channels = array[..., :3].astype(np.float32)
        if channels.shape[-1] < 3:  # grey, or grey + alpha
            array = channels[..., 0]
        else:  # ITU-R 601 luma, as PIL's "L" conversion
            array = channels @ np.array([0.299, 0.587, 0.114], np.float32)
            array = np.clip(np.round(array), 0, 255).astype(np.uint8) if channels.max() <= 255 else array
    return to_uint8(array)
