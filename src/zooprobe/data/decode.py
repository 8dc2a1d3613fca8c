"""Decoding image files at the size they are needed, within a pixel limit.

Memory follows the size a backbone needs, not the original's: given ``min_size`` (the height and width
an image will be resized to), :func:`decode` keeps at least :data:`REDUCING_GAP` times that on each
side and reduces the rest while decoding. JPEGs are decoded at 1/2, 1/4 or 1/8 scale by the codec
itself (``Image.draft``); large PNGs are decoded in strips of rows, each box-reduced (``Image.reduce``)
as it arrives, so the full-size image never exists; other formats are decoded whole, then reduced.
Images smaller than ``REDUCING_GAP`` x 2 times the size needed are decoded exactly as before.

Images over the pixel limit (:func:`max_pixels`: an argument, else ``$ZOOPROBE_MAX_PIXELS``, else
:data:`DEFAULT_MAX_PIXELS`) are refused from their header, before any pixel is decoded.
"""

from __future__ import annotations

import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..errors import ZooprobeError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

MAX_PIXELS_ENV = "ZOOPROBE_MAX_PIXELS"
# Pillow refuses images above twice its MAX_IMAGE_PIXELS (2 x 89,478,485) as decompression bombs
DEFAULT_MAX_PIXELS = 178_956_970
# decoded sides stay at least this many times the resize target, so the final antialiased resize
# still averages over several source pixels (Pillow's ``reducing_gap``)
REDUCING_GAP = 2
# PNGs over this many pixels are decoded in strips when they are needed smaller
STREAM_ABOVE = 16_000_000
_STRIP_BYTES = 512 << 10  # decompressed bytes per strip
_PROBE_SIDE = 256  # the size read_dataset decodes at to check that a file decodes
_PIL_OPEN = threading.Lock()
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: gray, RGB, palette, gray+alpha, RGBA
_PNG_SAME_BPP = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # bytes per pixel -> an 8-bit mode with as many


class BadImage(Exception):
    """A file that cannot be decoded; the message is the reason."""


class TooLarge(BadImage):
    """An image whose header gives more pixels than the limit."""

    def __init__(self, width: int, height: int, limit: int) -> None:
        self.width, self.height, self.limit = width, height, limit
        self.reason = f"image is {width}x{height} ({width * height:,} pixels), over the pixel limit of {limit:,}"
        self.fix = f"raise it with {MAX_PIXELS_ENV}={width * height} (max_pixels={width * height} from Python)"
        super().__init__(f"{self.reason}; {self.fix}")


def max_pixels(value: int | None = None) -> int:
    """The pixel limit: ``value``, else ``$ZOOPROBE_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`; 0 is no limit.

    :raises ZooprobeError: for a negative value or an environment variable that is not a whole number.
    """
    if value is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            value = -1
        if value < 0:
            raise ZooprobeError(
                f"{MAX_PIXELS_ENV}='{text}' is not a pixel count: set it to a whole number such as "
                f"{DEFAULT_MAX_PIXELS} (0 for no limit), or unset it"
            )
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ZooprobeError(f"max_pixels {value!r} must be a whole number of pixels >= 0 (0 for no limit)")
    return value


def decode(
    source: Path | IO[bytes],
    *,
    limit: int,
    min_size: tuple[int, int] | None = None,
    stream_above: int = STREAM_ABOVE,
) -> tuple[npt.NDArray[np.uint8], tuple[int, int, int]]:
    """(pixels, full shape) of an image file: uint8 H x W x C (C = 1 or 3, alpha dropped, EXIF rotation
    applied) decoded at a reduced size when ``min_size`` allows it (see the module docstring), and the
    (height, width, channels) of the image at full size.

    :raises TooLarge: when the image has more than ``limit`` pixels (0: no limit).
    :raises BadImage: when it cannot be decoded.
    """
    from PIL import Image

    try:
        with _open(source) as image:
            width, height = image.size
            if limit and width * height > limit:
                raise TooLarge(width, height, limit)
            orientation = _orientation(image, loaded=False)
            need = None
            if min_size is not None:
                need_h, need_w = (max(1, side) * REDUCING_GAP for side in min_size)
                need = (need_w, need_h) if orientation in (5, 6, 7, 8) else (need_h, need_w)  # file orientation
                if image.format == "JPEG":
                    image.draft(None, (need[1], need[0]))  # the codec decodes at 1/2, 1/4 or 1/8 scale
            factor = _factor(image.size, need)
            strips = None
            if factor > 1 and image.format == "PNG" and width * height > stream_above and _one_frame(image):
                strips = _png_in_strips(source, factor)
            if strips is None:
                image.load()
                orientation = _orientation(image, loaded=True)
                pixels = _reduce(_to_array(image), factor)
            else:
                pixels, exif = strips
                orientation = _orientation(image, loaded=False, exif=exif)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error) as exc:
        raise BadImage(str(exc) or type(exc).__name__) from exc
    except Image.DecompressionBombError as exc:  # not raised while our own limit is the one in force
        raise BadImage(str(exc)) from exc
    pixels = _orient(pixels, orientation)
    full = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
    return pixels, (full[0], full[1], pixels.shape[2])


def probe(source: Path | IO[bytes], *, limit: int) -> tuple[int, int, int]:
    """The full (height, width, channels) of an image file, after decoding all of it at a small size.

    :raises TooLarge: over the pixel limit. :raises BadImage: when it cannot be decoded.
    """
    return decode(source, limit=limit, min_size=(_PROBE_SIDE, _PROBE_SIDE))[1]


def _open(source: Path | IO[bytes]) -> Image.Image:
    from PIL import Image

    # the caller checks its own pixel limit on the size read here; Pillow's global one would refuse or
    # warn first. The lock keeps other threads of this process from opening while it is lifted.
    with _PIL_OPEN:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _orientation(image: Image.Image, *, loaded: bool, exif: bytes | None = None) -> int:
    """The EXIF orientation (1 to 8); ``loaded=False`` for a PNG reads only its eXIf chunk (``exif``, or one
    before the pixels): Pillow's ``getexif`` of an unloaded PNG would decode it all."""
    from PIL import Image

    if image.format == "PNG" and not loaded:
        tags = Image.Exif()
        data = exif or image.info.get("exif")
        if isinstance(data, bytes):
            tags.load(data)
    else:
        tags = image.getexif()  # Pillow also reads the orientation from XMP
    value = tags.get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(pixels: npt.NDArray[np.uint8], orientation: int) -> npt.NDArray[np.uint8]:
    """Apply an EXIF orientation as ``ImageOps.exif_transpose`` does (phone photos store their rotation)."""
    import numpy as np

    turns: dict[int, Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.uint8]]] = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    turn = turns.get(orientation)
    return pixels if turn is None else np.ascontiguousarray(turn(pixels))


def _factor(size: tuple[int, int], need: tuple[int, int] | None) -> int:
    """The largest integer reduction of a (width, height) image that keeps ``need`` (height, width)."""
    if need is None:
        return 1
    width, height = size
    return max(1, min(height // need[0], width // need[1]))


def _one_frame(image: Image.Image) -> bool:
    return int(getattr(image, "n_frames", 1)) == 1 and image.info.get("interlace", 0) == 0


def _to_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    """A decoded image as uint8 H x W x C, C = 1 (grayscale) or 3; alpha dropped, 16-bit to 8-bit."""
    import numpy as np

    mode = image.mode
    if mode.startswith("I") or mode == "F":
        wide = np.asarray(image).astype(np.float64)
        # 16-bit grayscale (PNG, TIFF) keeps its top 8 bits; 8-bit values stored wide stay as they are
        if mode.startswith("I;16") or (mode == "I" and wide.max(initial=0) > 255):
            wide = wide / 257.0
        array = np.clip(np.rint(wide), 0, 255).astype(np.uint8)
    else:
        if mode in ("1", "LA", "La"):
            image = image.convert("L")
        elif mode in ("P", "PA"):
            image = image.convert("RGBA").convert("RGB")
        elif mode != "L" and mode != "RGB":
            image = image.convert("RGB")  # RGBA drops alpha; CMYK, YCbCr and the rest become RGB
        array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


def _reduce(pixels: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.uint8]:
    """Each ``factor`` x ``factor`` block averaged into one pixel (partial blocks at the edges too)."""
    import numpy as np
    from PIL import Image

    if factor <= 1:
        return pixels
    flat = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    reduced = np.asarray(Image.fromarray(flat).reduce(factor), dtype=np.uint8)
    return np.ascontiguousarray(reduced.reshape(reduced.shape[0], reduced.shape[1], pixels.shape[2]))


def _png_in_strips(source: Path | IO[bytes], factor: int) -> tuple[npt.NDArray[np.uint8], bytes | None] | None:
    """A non-interlaced PNG decoded ``factor`` times smaller, strip by strip; None for the rare layouts
    this does not cover (16-bit RGB and RGBA, palettes without PLTE), which are then decoded whole.
    Also the eXIf chunk, if any.

    The compressed rows are inflated a strip at a time and handed to Pillow's PNG row decoder, led by
    the previous strip's last row unfiltered (PNG filters refer to the row above): once in the file's own
    format, giving the strip's pixels, and (unless those are 8-bit samples already) once as 8-bit pixels
    with as many bytes each, giving the unfiltered bytes of its last row for the next strip. Each strip
    is converted and reduced before the next; strips hold a multiple of ``factor`` rows, so the result
    equals reducing the whole image.
    """

    if isinstance(source, Path):
        with open(source, "rb") as handle:
            return _png_strips(handle, factor)
    return _png_strips(source, factor)


def _png_strips(handle: IO[bytes], factor: int) -> tuple[npt.NDArray[np.uint8], bytes | None] | None:
    import numpy as np
    from PIL import Image, PngImagePlugin

    handle.seek(0)
    if handle.read(8) != _PNG_SIGNATURE:
        raise BadImage("not a PNG file")
    width = height = depth = colour = row_bytes = bpp = 0
    exif = palette = None
    mode = raw_mode = ""
    inflater = zlib.decompressobj()
    pending = bytearray()
    prior = b""
    parts: list[npt.NDArray[np.uint8]] = []
    done = strip_rows = 0

    def flush(rows: int) -> None:
        nonlocal prior, done
        size = rows * (row_bytes + 1)
        # stored (level 0): the zlib stream only carries the rows to Pillow's decoder
        data = zlib.compress(b"\0" + prior + pending[:size], 0)
        del pending[:size]
        strip = Image.frombytes(mode, (width, rows + 1), data, "zip", raw_mode)
        if depth == 8 and raw_mode == mode:  # 8-bit samples: the decoded pixels are the unfiltered bytes
            prior = strip.crop((0, rows, width, rows + 1)).tobytes()
        else:
            same = _PNG_SAME_BPP[bpp]
            raw = Image.frombytes(same, (row_bytes // bpp, rows + 1), data, "zip", same)
            prior = raw.crop((0, rows, raw.width, rows + 1)).tobytes()
        if palette is not None:
            strip.putpalette(palette)
        parts.append(_reduce(_to_array(strip.crop((0, 1, width, rows + 1))), factor))
        done += rows

    def take(data: bytes) -> None:
        out = inflater.decompress(data, _STRIP_BYTES)
        while True:
            pending.extend(out)
            while done < height and len(pending) >= min(strip_rows, height - done) * (row_bytes + 1):
                flush(min(strip_rows, height - done))
            if not inflater.unconsumed_tail or done >= height:
                return
            out = inflater.decompress(inflater.unconsumed_tail, _STRIP_BYTES)

    while True:
        head = handle.read(8)
        if len(head) < 8:
            raise BadImage("image file is truncated")
        length, kind = struct.unpack(">I4s", head)
        crc = zlib.crc32(kind)
        if kind == b"IEND":
            break
        if kind not in (b"IHDR", b"PLTE", b"IDAT", b"eXIf"):
            handle.seek(length + 4, os.SEEK_CUR)
            continue
        left = length
        data = b""
        while left:
            piece = handle.read(min(left, 1 << 20))
            if not piece:
                raise BadImage("image file is truncated")
            crc = zlib.crc32(piece, crc)
            left -= len(piece)
            if kind == b"IDAT":
                take(piece)
            else:
                data += piece
        if handle.read(4) != struct.pack(">I", crc):
            raise BadImage(f"broken PNG file (bad CRC in {kind.decode('latin-1')})")
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[:13])
            channels = _PNG_CHANNELS.get(colour, 0)
            bpp = max(1, channels * depth // 8)
            if interlace or bpp not in _PNG_SAME_BPP or (depth, colour) not in PngImagePlugin._MODES:
                return None
            mode, raw_mode = PngImagePlugin._MODES[(depth, colour)]  # what Pillow decodes a PNG into
            row_bytes = (width * channels * depth + 7) // 8
            strip_rows = factor * max(1, _STRIP_BYTES // (factor * (row_bytes + 1)))
            prior = bytes(row_bytes)  # the row above the first is zeros
        elif kind == b"PLTE":
            palette = data
        elif kind == b"eXIf":
            exif = data
    if not row_bytes:
        raise BadImage("PNG file without an IHDR chunk")
    if colour == 3 and palette is None:
        return None  # Pillow's own decoder says what it makes of a palette image without a palette
    if done < height:
        raise BadImage("image file is truncated")
    return np.concatenate(parts), exif


# deflate expands at most about 1032:1; a member claiming more than this is lying about its size
_DEFLATE_RATIO = 1032


def check_npz(path: Path, limit: int) -> None:
    """Refuse an ``.npz`` whose arrays ``x`` and ``y`` declare more bytes than its members can hold, or
    images (``x``'s second and third axes) over the pixel limit, from their headers: before numpy
    allocates what they declare.

    :raises ZooprobeError: naming the array, what it declares, and the fix.
    """
    import numpy as np
    from numpy.lib import format as npy_format

    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in ("x", "y"):
                continue
            with archive.open(info) as member:
                version = npy_format.read_magic(member)
                read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                shape, _, dtype = read(member)
                header = member.tell()
            if dtype.hasobject:
                continue  # np.load refuses it without pickle
            declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            room = min(info.file_size, max(info.compress_size, 1) * _DEFLATE_RATIO) - header
            if declared > room:
                raise ZooprobeError(
                    f"'{path}': array '{name}' declares shape {tuple(shape)} of {dtype} ({declared:,} bytes) but its"
                    f" file holds at most {max(room, 0):,}: the file is damaged or forged; save it again with np.savez"
                )
            if name == "x" and len(shape) >= 3 and limit and shape[1] * shape[2] > limit:
                fix = TooLarge(shape[2], shape[1], limit).fix
                raise ZooprobeError(
                    f"'{path}': 'x' holds images of {shape[2]}x{shape[1]} ({shape[1] * shape[2]:,} pixels), over the"
                    f" pixel limit of {limit:,}; {fix}"
                )
