"""Colour, binning and interpolation helpers for charts and maps (Micromegas's web-app functions).

* ``rgba(r, g, b, a) → UInt32``: four ``[0, 1]`` floats (clamped) packed as ``0xRRGGBBAA``;
  a channel is ``floor(clamp(f * 255 + 0.5, 0, 255))`` (``0.5`` → ``0x80``).
* ``lerp_color(c1, c2, t) → UInt32``: channel-wise interpolation of two packed colours, ``t``
  clamped to ``[0, 1]``, each channel rounded half up.
* ``color_scale(name, t, alpha) → UInt32``: the colour of a named scale (``viridis``, ``magma``,
  ``plasma``, ``inferno``, ``cividis``, ``turbo``; case-insensitive) at ``t`` (clamped), with
  ``alpha`` as the alpha channel. The 256-colour ramps are sampled with a uniform cubic B-spline
  in single precision; cividis and turbo are polynomial fits. An unknown name is an error that
  lists the known ones.
* ``bin_center(coord, cell_size) → Float64``: centre of the zero-centred bin holding ``coord``.
* ``lerp(a, b, t) = a + (b - a)·t`` and ``unlerp(a, b, x) = (x - a) / (b - a)``, unclamped.

Every function returns NULL for a row where any argument is NULL, and is vectorised with numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ._sql_colormaps import RAMPS

__all__ = ["COLOR_SCALES", "color_scale_rgb", "visual_udfs"]

COLOR_SCALES = ("viridis", "magma", "plasma", "inferno", "cividis", "turbo")
"""The names ``color_scale`` recognises, in the order its error message lists them."""

_F32 = np.float32
_RAMP_RGB: dict[str, npt.NDArray[np.float32]] = {
    name: np.frombuffer(bytes.fromhex(digits), dtype=np.uint8).reshape(256, 3).astype(_F32)
    for name, digits in RAMPS.items()
}


def _valid(*arrays: pa.Array) -> npt.NDArray[np.bool_]:
    mask = np.ones(len(arrays[0]), dtype=bool)
    for array in arrays:
        mask &= ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return mask


def _floats(array: pa.Array) -> npt.NDArray[np.float64]:
    return np.asarray(array.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)


def _u8(values: npt.NDArray[np.floating]) -> npt.NDArray[np.uint32]:
    """Rust's saturating ``as u8``: truncation toward zero, NaN → 0."""
    clean = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.trunc(clean), 0, 255).astype(np.uint32)


def _unit_to_byte(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint32]:
    return _u8(np.clip(values * 255.0 + 0.5, 0.0, 255.0))


def _pack(
    r: npt.NDArray[np.uint32], g: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32], a: npt.NDArray[np.uint32]
) -> npt.NDArray[np.uint32]:
    return (r << 24) | (g << 16) | (b << 8) | a


def _result(values: npt.NDArray[np.generic], valid: npt.NDArray[np.bool_], value_type: pa.DataType) -> pa.Array:
    return pa.array(values, type=value_type, mask=~valid)


def rgba(r: pa.Array, g: pa.Array, b: pa.Array, a: pa.Array) -> pa.Array:
    """``rgba(r, g, b, a) → UInt32`` (``0xRRGGBBAA``)."""
    valid = _valid(r, g, b, a)
    channels = [_unit_to_byte(_floats(c)) for c in (r, g, b, a)]
    return _result(_pack(*channels), valid, pa.uint32())


def _channels(colors: pa.Array) -> list[npt.NDArray[np.float64]]:
    packed = np.asarray(colors.cast(pa.uint32()).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.uint32)
    return [((packed >> shift) & 0xFF).astype(np.float64) for shift in (24, 16, 8, 0)]


def lerp_color(c1: pa.Array, c2: pa.Array, t: pa.Array) -> pa.Array:
    """``lerp_color(c1, c2, t) → UInt32``: channel-wise, ``t`` clamped, alpha included."""
    valid = _valid(c1, c2, t)
    weights = np.clip(_floats(t), 0.0, 1.0)
    channels = [
        _u8(np.clip(x + (y - x) * weights + 0.5, 0.0, 255.0)) for x, y in zip(_channels(c1), _channels(c2), strict=True)
    ]
    return _result(_pack(*channels), valid, pa.uint32())


def _spline(ramp: npt.NDArray[np.float32], t: npt.NDArray[np.float32]) -> npt.NDArray[np.uint32]:
    """Uniform cubic B-spline through the ramp's colours, in float32, per channel → bytes."""
    n = ramp.shape[0] - 1
    i = np.minimum(np.floor(t * _F32(n)).astype(np.int64), n - 1)
    v1, v2 = ramp[i], ramp[i + 1]
    v0 = np.where((i > 0)[:, None], ramp[np.maximum(i - 1, 0)], _F32(2.0) * v1 - v2)
    v3 = np.where((i < n - 1)[:, None], ramp[np.minimum(i + 2, n)], _F32(2.0) * v2 - v1)
    t1 = ((t - i.astype(_F32) / _F32(n)) * _F32(n))[:, None]
    t2 = t1 * t1
    t3 = t2 * t1
    one, three, four, six = _F32(1.0), _F32(3.0), _F32(4.0), _F32(6.0)
    total = (
        (one - three * t1 + three * t2 - t3) * v0
        + (four - six * t2 + three * t3) * v1
        + (one + three * t1 + three * t2 - three * t3) * v2
        + t3 * v3
    ) / six
    return _u8(total)


def _turbo(t: npt.NDArray[np.float32]) -> npt.NDArray[np.uint32]:
    """Anton Mikhailov's polynomial fit of turbo, evaluated in float32 in this nesting order."""
    c = _F32
    r = c(34.61) + t * (c(1172.33) - t * (c(10793.56) - t * (c(33300.12) - t * (c(38394.49) - t * c(14825.05)))))
    g = c(23.31) + t * (c(557.33) + t * (c(1225.33) - t * (c(3574.96) - t * (c(1073.77) + t * c(707.56)))))
    b = c(27.2) + t * (c(3211.1) - t * (c(15327.97) - t * (c(27814.0) - t * (c(22569.18) - t * c(6838.66)))))
    return np.stack([_u8(x) for x in (r, g, b)], axis=1)


def _cividis(t: npt.NDArray[np.float32]) -> npt.NDArray[np.uint32]:
    """Polynomial fit of cividis, float32, clamped to bytes."""
    c = _F32
    r = c(-4.54) - t * (c(35.34) - t * (c(2381.73) - t * (c(6402.7) - t * (c(7024.72) - t * c(2710.57)))))
    g = c(32.49) + t * (c(170.73) + t * (c(52.82) - t * (c(131.46) - t * (c(176.58) - t * c(67.37)))))
    b = c(81.24) + t * (c(442.36) - t * (c(2482.43) - t * (c(6167.24) - t * (c(6614.94) - t * c(2475.67)))))
    return np.stack([_u8(np.clip(x, 0, 255)) for x in (r, g, b)], axis=1)


def color_scale_rgb(name: str, t: npt.NDArray[np.float64]) -> npt.NDArray[np.uint32]:
    """RGB bytes (``n x 3``) of scale ``name`` at positions ``t`` (clamped to ``[0, 1]``).

    Raises:
        ValueError: unknown scale name.
    """
    key = name.lower()
    positions = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0).astype(_F32)
    if key in _RAMP_RGB:
        return _spline(_RAMP_RGB[key], positions)
    if key == "cividis":
        return _cividis(positions)
    if key == "turbo":
        return _turbo(positions)
    msg = f"color_scale(): unknown colormap '{name}'. Recognized: {', '.join(COLOR_SCALES)}"
    raise ValueError(msg)


def color_scale(names: pa.Array, t: pa.Array, alpha: pa.Array) -> pa.Array:
    """``color_scale(name, t, alpha) → UInt32``; one evaluation per distinct name."""
    valid = _valid(names, t, alpha)
    positions = _floats(t)
    alphas = _unit_to_byte(_floats(alpha))
    out = np.zeros(len(names), dtype=np.uint32)
    encoded = pc.dictionary_encode(names.cast(pa.utf8()))
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False))
    for code, name in enumerate(encoded.dictionary.to_pylist()):
        rows = np.flatnonzero((codes == code) & valid)
        if rows.size == 0:
            continue
        rgb = color_scale_rgb(name, positions[rows])
        out[rows] = _pack(rgb[:, 0], rgb[:, 1], rgb[:, 2], alphas[rows])
    return _result(out, valid, pa.uint32())


def bin_center(coord: pa.Array, cell_size: pa.Array) -> pa.Array:
    """``bin_center(coord, cell_size) → Float64``: ``floor((c + cs/2) / cs) · cs``."""
    valid = _valid(coord, cell_size)
    c, cs = _floats(coord), _floats(cell_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _result(np.floor((c + cs * 0.5) / cs) * cs, valid, pa.float64())


def lerp(a: pa.Array, b: pa.Array, t: pa.Array) -> pa.Array:
    """``lerp(a, b, t) → Float64``: ``a + (b - a)·t``, unclamped."""
    valid = _valid(a, b, t)
    x, y, w = _floats(a), _floats(b), _floats(t)
    with np.errstate(invalid="ignore", over="ignore"):
        return _result(x + (y - x) * w, valid, pa.float64())


def unlerp(a: pa.Array, b: pa.Array, x: pa.Array) -> pa.Array:
    """``unlerp(a, b, x) → Float64``: ``(x - a) / (b - a)`` (NaN or ±inf when ``a = b``)."""
    valid = _valid(a, b, x)
    lo, hi, v = _floats(a), _floats(b), _floats(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _result((v - lo) / (hi - lo), valid, pa.float64())


def visual_udfs() -> list[tuple[str, Callable[..., pa.Array], list[pa.DataType], pa.DataType]]:
    """``(name, function, input types, return type)`` of the colour, binning and math functions."""
    f64, u32 = pa.float64(), pa.uint32()
    return [
        ("rgba", rgba, [f64, f64, f64, f64], u32),
        ("lerp_color", lerp_color, [u32, u32, f64], u32),
        ("color_scale", color_scale, [pa.utf8(), f64, f64], u32),
        ("bin_center", bin_center, [f64, f64], f64),
        ("lerp", lerp, [f64, f64, f64], f64),
        ("unlerp", unlerp, [f64, f64, f64], f64),
    ]
