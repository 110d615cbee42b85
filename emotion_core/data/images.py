"""Robust image decoding: every readable picture becomes an HxWx3 uint8 RGB array, or a typed error.

Scraped face sets hold grayscale, CMYK, palette, transparent, 16-bit, EXIF-rotated and broken
files side by side. The dataset index, the decode-once cache and the app's upload box all go
through `load_rgb`, so a picture looks the same wherever it is shown or learned from.

Conversion rules (chosen once, here):
- EXIF orientation is applied, so the array is upright as a viewer shows it.
- Transparency (RGBA, LA, PA, palette with a transparent index) is composited on **black**: the
  face crops this project uses sit on black, so a cut-out face matches them.
- 16-bit integer images (modes I;16*, I) are scaled by 1/257 (65535 -> 255), never clipped.
- Float images (mode F) are taken as [0, 1] when their maximum is <= 1, as [0, 255] when <= 255,
  otherwise as 16-bit range; NaN becomes 0.
- CMYK (Adobe-inverted JPEGs included, which Pillow un-inverts on load) uses Pillow's conversion
  (no colour management: embedded ICC profiles are ignored).
- Multi-frame files (GIF, TIFF) give their first frame.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A truncated JPEG must fail loudly (kind "unreadable"), not decode as a half-grey picture.
Image.LOAD_TRUNCATED_IMAGES = False

DECODE_ERROR_KINDS = ("unreadable", "not_an_image", "too_small", "too_large")
DEFAULT_MAX_PIXELS = 40_000_000
_ORIENTATION_TAG = 0x0112

Source = str | Path | bytes | bytearray | memoryview | BinaryIO


class ImageDecodeError(ValueError):
    """A file that cannot become an RGB array; `kind` says why (one of DECODE_ERROR_KINDS)."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in DECODE_ERROR_KINDS:
            raise ValueError(f"unknown decode error kind {kind!r}")
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ImageInfo:
    """What the file said about itself before conversion (for the dataset index)."""

    format: str  # "JPEG", "PNG", ... as Pillow names it
    mode: str  # original Pillow mode, e.g. "L", "CMYK", "I;16"
    width: int  # after EXIF orientation
    height: int
    exif_rotated: bool


def load_rgb(source: Source, *, min_side: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
             max_side: int | None = None) -> np.ndarray:
    """Decode `source` (path, bytes or binary file object) to an upright HxWx3 uint8 RGB array.

    Raises ImageDecodeError with kind "not_an_image" (no known image format), "unreadable"
    (truncated or corrupt data), "too_small" (shorter side < min_side) or "too_large" (more than
    max_pixels pixels: a decompression bomb is refused before its pixels are decoded).
    FileNotFoundError is left as is: a missing file is a caller mistake, not a bad image.
    """
    return read_image(source, min_side=min_side, max_pixels=max_pixels, max_side=max_side)[0]


def read_image(source: Source, *, min_side: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None, max_side: int | None = None) -> tuple[np.ndarray, ImageInfo]:
    """`load_rgb` plus the file's own format/mode/size, in one decode (`name` for messages).

    `max_side` shrinks a picture whose longer side is larger (JPEGs are decoded at a reduced
    scale directly, so a 48-megapixel phone photo never exists at full size in memory)."""
    name = f"'{name}'" if name else _describe(source)
    fp = _open_stream(source)
    try:
        try:
            im = Image.open(fp)
        except UnidentifiedImageError as exc:
            raise ImageDecodeError("not_an_image", f"{name} is not an image file") from exc
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError("too_large", f"{name} is a decompression bomb ({exc})") from exc
        except (OSError, SyntaxError, ValueError) as exc:  # Pillow raises these on bad headers
            raise ImageDecodeError("unreadable", f"{name} has a corrupt header ({exc})") from exc
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageDecodeError("too_large", f"{name} has {w}x{h} pixels, more than "
                                       f"the {max_pixels:,} allowed")
            if min(w, h) < min_side:
                raise ImageDecodeError("too_small", f"{name} is {w}x{h}, smaller than "
                                       f"{min_side} px on its short side")
            fmt, mode = im.format or "", im.mode
            try:
                if max_side and max(w, h) > max_side and fmt == "JPEG":
                    im.draft("RGB", (max_side, max_side))  # DCT scaling: 1/2, 1/4 or 1/8
                im.load()
                if max_side and max(im.size) > max_side:
                    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                rotated = im.getexif().get(_ORIENTATION_TAG, 1) not in (None, 1)
                rgb = _to_rgb(ImageOps.exif_transpose(im) if rotated else im)
            except Image.DecompressionBombError as exc:
                raise ImageDecodeError("too_large", f"{name}: {exc}") from exc
            except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
                raise ImageDecodeError("unreadable", f"{name} cannot be decoded ({exc})") from exc
    finally:
        if fp is not source:  # close what we opened, never the caller's file object
            fp.close()
    info = ImageInfo(format=fmt, mode=mode, width=rgb.shape[1], height=rgb.shape[0],
                     exif_rotated=rotated)
    return rgb, info


def _describe(source: Source) -> str:
    if isinstance(source, (str, Path)):
        return f"'{source}'"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"the {len(source)}-byte upload"
    return f"'{getattr(source, 'name', 'the upload')}'"


def _open_stream(source: Source) -> BinaryIO:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no image file at {path}")
        return open(path, "rb")  # noqa: SIM115 (closed in read_image)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        return source
    raise TypeError(f"load_rgb takes a path, bytes or a binary file object, not {type(source).__name__}")


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to contiguous HxWx3 uint8 following the module's rules."""
    mode = im.mode
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    if mode == "L":
        return _gray_to_rgb(np.asarray(im, dtype=np.uint8))
    if mode == "P":
        has_alpha = "transparency" in im.info or im.palette is not None and im.palette.mode == "RGBA"
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
        if mode == "RGB":
            return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    if mode in ("LA", "La", "PA", "RGBa", "RGBA"):
        if mode in ("La", "RGBa"):  # premultiplied: already composited on black
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:4]
        return ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8)
    if mode == "1":
        return _gray_to_rgb(np.asarray(im.convert("L"), dtype=np.uint8))
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float64)
        return _gray_to_rgb(_scale_16bit(arr))
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(arr.max()) if arr.size else 0.0
        if peak <= 1.0:
            arr = np.clip(arr, 0.0, 1.0) * 255.0
            return _gray_to_rgb(np.round(arr).astype(np.uint8))
        if peak <= 255.0:
            return _gray_to_rgb(np.round(np.clip(arr, 0.0, 255.0)).astype(np.uint8))
        return _gray_to_rgb(_scale_16bit(arr))
    # CMYK, YCbCr, HSV, LAB and anything else Pillow knows how to turn into RGB.
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _scale_16bit(arr: np.ndarray) -> np.ndarray:
    """Map a 0..65535 range to 0..255 by 1/257 (exact for 8-bit values stored as 16-bit)."""
    return np.round(np.clip(arr, 0.0, 65535.0) / 257.0).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
