"""What a file really is, from its first bytes, and what its header claims (Qt-free).

Used before any decoder sees a file, so that a misnamed or hostile file gets a message that says
what it is ("a text file", "an ONNX model", "a Python pickle") and so that sizes claimed by image
and video headers are checked against ``loupe.base.limits`` before anything is decoded. Nothing here
executes or unpickles anything; it only reads bytes.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ClaimedSize",
    "check_file",
    "claimed_size",
    "content_mismatch",
    "describe_content",
    "looks_like_onnx",
    "mp4_structure_problem",
    "read_head",
]

HEAD = 4096


def read_head(path: str | Path, n: int = HEAD) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _is_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = head[:-3].decode("utf-8")  # a multi-byte character cut at the end
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.97 * max(len(text), 1)


def looks_like_onnx(head: bytes) -> bool:
    """An ONNX ModelProto as every exporter writes it: field 1 (ir_version, a small varint)
    first, then producer/domain/graph fields."""
    return (
        len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30
        and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72)
    )


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()[:10000]
    except (zipfile.BadZipFile, OSError, ValueError):
        return "a ZIP archive"
    if any(n.endswith(".pkl") for n in names):
        return "a PyTorch checkpoint (a ZIP archive holding a Python pickle)"
    if any(n.endswith(".npy") for n in names):
        return "a NumPy .npz archive"
    return "a ZIP archive"


def describe_content(path: str | Path, head: bytes | None = None) -> str | None:
    """What the bytes of ``path`` are, as a phrase ("an MP4 video", "a text file"), or None when
    they are not recognised. Reads only the start of the file (and a ZIP's directory)."""
    path = Path(path)
    head = read_head(path) if head is None else head
    if not head:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "a GIF image"
    if head.startswith(b"BM") and len(head) > 14:
        return "a BMP image"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "a TIFF image"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "a WebP image"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "an AVI video"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "a QuickTime video" if brand == b"qt  " else "an MP4 video"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "an MP4/QuickTime video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "a Matroska/WebM video"
    if head.startswith(b"YUV4MPEG2"):
        return "a raw YUV4MPEG2 video"
    if head.startswith(b"OggS"):
        return "an Ogg stream"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "a DICOM file"
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "a Python pickle"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array file"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head.startswith((b"\x1f\x8b",)):
        return "a gzip archive"
    if looks_like_onnx(head):
        return "an ONNX model"
    if _is_text(head):
        lower = head.lstrip()[:64].lower()
        if lower.startswith((b"<!doctype html", b"<html")):
            return "an HTML page (a failed download?)"
        return "a text file"
    return None


IMAGE_KINDS = {
    ".png": "a PNG image", ".jpg": "a JPEG image", ".jpeg": "a JPEG image", ".bmp": "a BMP image",
    ".tif": "a TIFF image", ".tiff": "a TIFF image", ".webp": "a WebP image",
}
#: Content that is never a picture or a video, whatever its name says.
NOT_MEDIA = ("a text file", "an HTML page", "an ONNX model", "a Python pickle", "a PyTorch checkpoint",
             "a NumPy", "a ZIP archive", "a gzip archive")


def content_mismatch(path: str | Path, expected: str, head: bytes | None = None) -> str | None:
    """Why ``path`` is not what its name says (``expected``: ``image`` or ``video``), or None.

    Only clear contradictions count: content that is never media (text, a model, a pickle, an
    archive), a video named as an image, a DICOM file named as an image or a video. An image in
    another image format than its suffix says is fine (decoders go by content)."""
    path = Path(path)
    what = describe_content(path, head)
    if what is None:
        return None
    suffix = path.suffix.lower()
    named = IMAGE_KINDS.get(suffix, "an image") if expected == "image" else "a video"
    if what == "an ONNX model":
        return f"{path.name} is an ONNX model, not something to look at: load it as the model"
    if what.startswith(NOT_MEDIA):
        return f"{path.name} is not {named}: it is {what}"
    if what == "a DICOM file":
        return f"{path.name} is not {named}: it is a DICOM file (rename it to .dcm)"
    if expected == "image" and not what.endswith("image"):
        return f"{path.name} is not {named}: it is {what} (rename it, e.g. to .mp4)"
    return None


def check_file(path: str | Path, expected: str) -> None:
    """Refuse ``path`` before decoding when it is empty, is not what its name says (see
    ``content_mismatch``) or claims a frame over ``loupe.base.limits`` (``expected``: ``image`` or
    ``video``). Raises SourceError with the reason; returns quietly otherwise."""
    from loupe.base.limits import current
    from loupe.sources.base import SourceError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return  # the decoder reports a missing or unreadable file in its own words
    if size == 0:
        raise SourceError(f"{path.name} is empty (0 bytes)")
    head = read_head(path)  # read once: both checks look at the start of the file
    problem = content_mismatch(path, expected, head)
    if problem:
        raise SourceError(problem)
    claim = claimed_size(path, head)
    if claim is not None:
        too_big = current().frame_problem(claim.width, claim.height, claim.bytes_per_pixel)
        if too_big:
            raise SourceError(f"{path.name} is refused: {too_big}")


# ----------------------------------------------------------------------------- claimed sizes


@dataclass(frozen=True)
class ClaimedSize:
    """Width, height and decoded bytes per pixel a header claims."""

    width: int
    height: int
    bytes_per_pixel: float


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_size(head: bytes) -> ClaimedSize | None:
    if len(head) < 33 or head[12:16] != b"IHDR":
        return None
    width, height, depth, color = struct.unpack(">IIBB", head[16:26])
    channels = _PNG_CHANNELS.get(color, 4)
    if color == 3:  # palette: expanded to RGB
        return ClaimedSize(width, height, 3.0)
    return ClaimedSize(width, height, channels * max(depth, 8) / 8)


def _jpeg_size(path: Path) -> ClaimedSize | None:
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError:
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            precision = data[i + 4]
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            components = data[i + 9] if i + 9 < len(data) else 3
            return ClaimedSize(width, height, max(components, 3) * (2 if precision > 8 else 1))
        i += 2 + length
    return None


def claimed_size(path: str | Path, head: bytes | None = None) -> ClaimedSize | None:
    """The frame size an image (PNG, JPEG, GIF, BMP, WebP) or raw video (Y4M) header claims,
    or None when the format is not one of these or the header is unreadable."""
    path = Path(path)
    head = read_head(path, 256) if head is None else head
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png_size(head)
        if head.startswith(b"\xff\xd8\xff"):
            return _jpeg_size(path)
        if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
            width, height = struct.unpack("<HH", head[6:10])
            return ClaimedSize(width, height, 4.0)
        if head.startswith(b"BM") and len(head) >= 30:
            width, height = struct.unpack("<ii", head[18:26])
            bits = struct.unpack("<H", head[28:30])[0]
            return ClaimedSize(abs(width), abs(height), max(bits, 24) / 8)
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP" and len(head) >= 30:
            chunk = head[12:16]
            if chunk == b"VP8X":
                width = 1 + int.from_bytes(head[24:27], "little")
                height = 1 + int.from_bytes(head[27:30], "little")
                return ClaimedSize(width, height, 4.0)
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", head[26:30])
                return ClaimedSize(width & 0x3FFF, height & 0x3FFF, 3.0)
            if chunk == b"VP8L":
                bits = int.from_bytes(head[21:25], "little")
                return ClaimedSize((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 4.0)
        if head.startswith(b"YUV4MPEG2"):
            line = head.split(b"\n", 1)[0].decode("ascii", "replace").split()
            dims = {tok[0]: tok[1:] for tok in line[1:] if tok}
            return ClaimedSize(int(dims["W"]), int(dims["H"]), 3.0)
    except (struct.error, KeyError, ValueError, IndexError):
        return None
    return None


# ----------------------------------------------------------------------------- MP4 structure


def mp4_structure_problem(path: str | Path) -> str | None:
    """Why an MP4/QuickTime file is structurally broken (top-level boxes only), or None.

    Finds the two things a cut-off recording or download shows: a box that runs past the end of
    the file, and no ``moov`` box (the index FFmpeg needs to find the frames)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8 or head[4:8] != b"ftyp":
                return None
            pos, boxes = 0, []
            while pos + 8 <= size and len(boxes) < 10000:
                f.seek(pos)
                header = f.read(16)
                box_size, kind = struct.unpack(">I4s", header[:8])
                if box_size == 1 and len(header) >= 16:
                    box_size = struct.unpack(">Q", header[8:16])[0]
                elif box_size == 0:
                    box_size = size - pos
                if box_size < 8:
                    return f"its MP4 structure is damaged at byte {pos}"
                boxes.append(kind)
                if pos + box_size > size:
                    name = kind.decode("latin-1")
                    if b"moov" not in boxes:
                        return (f"it is truncated: it ends at byte {size} inside its '{name}' box, before "
                                f"the index ('moov') that locates the frames (an unfinished recording or download?)")
                    return f"it is truncated: it ends at byte {size}, inside its '{name}' box that runs to byte {pos + box_size}"
                pos += box_size
    except (OSError, struct.error):
        return None
    if b"moov" not in boxes:
        return "it is truncated: it has no index ('moov' box) to locate the frames (an unfinished recording or download?)"
    return None
