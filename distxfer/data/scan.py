"""The quick scan: find images TensorFlow would fail on, from each file's first and last bytes.

Reading a few KiB at each end of a file is enough to know its kind (magic bytes), its header
fields (size, bit depth, colour layout) and whether it ends as it should (JPEG end marker
FF D9, PNG IEND chunk, GIF trailer 3B). That catches truncated copies, text or HTML saved
with an image extension, empty files, and image kinds TensorFlow 2.21 cannot decode (TIFF,
HEIC, 1/4/16-bit and palette BMPs, 12-bit JPEGs, animated WebP), at a fraction of the cost of
decoding. Pure Python, so it runs before TensorFlow is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from distxfer.data.splits import BadFile
from distxfer.data.storagemap import map_by_storage

# Most files are judged from 8 KiB + 4 KiB; a file that looks bad is read again with 64 KiB
# windows (large EXIF blocks, camera trailers after the JPEG end marker) before it is reported.
SMALL_WINDOWS = (8 * 1024, 4 * 1024)
LARGE_WINDOWS = (64 * 1024, 64 * 1024)
CONVERT = "convert it to PNG or JPEG (e.g. with Pillow) or remove it"


@dataclass(frozen=True)
class FileCheck:
    """What the quick scan learned about one file."""

    path: str
    kind: str  # jpeg, png, gif, bmp, webp; or tiff, heic, text, empty, unknown, unreadable...
    detail: str  # a notable variant, e.g. "cmyk", "16-bit gray", "8-bit palette"
    problem: str | None  # why it cannot be trained on, or None

    def as_bad_file(self) -> BadFile:
        return BadFile(self.path, self.problem or "")


def quick_scan(paths: Sequence[str], *, workers: int | None = None) -> list[BadFile]:
    """The files among `paths` that the pipeline could not decode, in `paths` order."""
    return [c.as_bad_file() for c in scan_files(paths, workers=workers) if c.problem]


def scan_files(paths: Sequence[str], *, workers: int | None = None) -> list[FileCheck]:
    """`check_file` for every path, on a thread pool of `workers` once the reads mostly wait for
    storage (`.storagemap`)."""
    workers = workers or min(32, 4 * (os.cpu_count() or 1))
    chunk = 256
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    done = map_by_storage(
        lambda part: [check_file(p) for p in part], chunks, threads=workers, name="distxfer-scan"
    )
    return [check for part in done for check in part]


def check_file(path: str) -> FileCheck:
    """Read the ends of `path` and judge it; never raises for a bad or missing file."""
    check, size = _check(path, SMALL_WINDOWS)
    if check.problem and size > sum(SMALL_WINDOWS):
        check, _ = _check(path, LARGE_WINDOWS)
    return check


def _check(path: str, windows: tuple[int, int]) -> tuple[FileCheck, int]:
    try:
        head, tail, tail_start, size = _read_ends(path, *windows)
    except OSError as error:
        return FileCheck(
            path,
            "unreadable",
            "",
            f"cannot be read ({error.strerror}); fix its permissions or remove it",
        ), 0
    if size == 0:
        return FileCheck(
            path, "empty", "", "is empty (0 bytes); replace it with the real image or remove it"
        ), 0
    kind = sniff_kind(head)
    checker = _CHECKERS.get(kind)
    if checker is None:
        return FileCheck(path, kind, "", _unsupported(kind, head)), size
    detail, problem = checker(head, tail, tail_start, size)
    return FileCheck(path, kind, detail, problem), size


def _read_ends(path: str, head_bytes: int, tail_bytes: int) -> tuple[bytes, bytes, int, int]:
    """(first bytes, last bytes, offset of the last bytes, file size)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(head_bytes)
        if size <= len(head):
            tail = head[-tail_bytes:]
        elif size <= head_bytes + tail_bytes:
            tail = (head + f.read())[-tail_bytes:]
        else:
            f.seek(size - tail_bytes)
            tail = f.read()
    return head, tail, size - len(tail), size


_OTHER_KINDS = {
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"8BPS": "psd",
    b"\x00\x00\x01\x00": "ico",
}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_KIND_NAMES = {
    "tiff": "TIFF",
    "psd": "Photoshop",
    "ico": "Windows icon",
    "heic": "HEIC/HEIF",
    "avif": "AVIF",
}


def sniff_kind(head: bytes) -> str:
    """The file kind from its magic bytes: jpeg, png, gif, bmp, webp, another name, or unknown."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in _OTHER_KINDS:
        return _OTHER_KINDS[head[:4]]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return (
            "avif" if brand in (b"avif", b"avis") else "heic" if brand in _HEIF_BRANDS else "video"
        )
    sample = head[:512]
    if all(b in b"\t\n\r\f" or 32 <= b < 127 or b >= 128 for b in sample):
        try:
            sample.decode("utf-8")
            return "text"
        except UnicodeDecodeError:
            pass
    return "unknown"


def _unsupported(kind: str, head: bytes) -> str:
    if kind in _KIND_NAMES:
        return f"is a {_KIND_NAMES[kind]} image, which TensorFlow cannot decode; {CONVERT}"
    if kind == "text":
        return f"is a text file, not an image (it starts with {head[:24]!r}); remove it"
    if kind == "video":
        return "is a video (MP4/MOV), not an image; remove it"
    return (
        f"is not a JPEG, PNG, GIF, BMP or WebP image (it starts with bytes "
        f"{head[:8].hex(' ')}); {CONVERT}"
    )


Checker = Callable[[bytes, bytes, int, int], tuple[str, "str | None"]]

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_HIERARCHICAL = {0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF}
_TRUNCATED = "is truncated ({what}), so it cannot be decoded; copy it again or remove it"


def _check_jpeg(head: bytes, tail: bytes, tail_start: int, size: int) -> tuple[str, str | None]:
    frame, scan_at = _jpeg_frame(head)
    detail = ""
    if frame:
        marker, precision, height, width, components = frame
        detail = {1: "gray", 4: "cmyk"}.get(components, "")
        if marker in (0xC2, 0xCA):
            detail = f"{detail} progressive".strip()
        if marker in _JPEG_HIERARCHICAL:
            return detail, f"is a hierarchical JPEG, which TensorFlow cannot decode; {CONVERT}"
        if precision != 8:
            return detail, (
                f"is a {precision}-bit JPEG; TensorFlow decodes only 8-bit JPEGs, so {CONVERT}"
            )
        if width == 0 or height == 0 or components not in (1, 3, 4):
            return detail, f"has a JPEG header TensorFlow cannot decode; {CONVERT}"
    if scan_at is None and size <= len(head):
        return detail, _TRUNCATED.format(what="no image data after the JPEG header")
    end = tail.rfind(b"\xff\xd9")
    if end < 0 or tail_start + end < (scan_at or 2):
        return detail, _TRUNCATED.format(what="no JPEG end marker FF D9")
    return detail, None


def _jpeg_frame(head: bytes) -> tuple[tuple[int, int, int, int, int] | None, int | None]:
    """Walk the JPEG markers: (SOF marker, precision, height, width, components), scan offset."""
    frame = None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return frame, None  # not a marker where one should be: leave it to the decoder
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xDA:
            return frame, pos
        if marker in _JPEG_SOF and pos + 10 <= len(head):
            frame = (
                marker,
                head[pos + 4],
                int.from_bytes(head[pos + 5 : pos + 7], "big"),
                int.from_bytes(head[pos + 7 : pos + 9], "big"),
                head[pos + 9],
            )
        pos += 2 + int.from_bytes(head[pos + 2 : pos + 4], "big")
    return frame, None


_PNG_COLOURS = {0: "gray", 2: "rgb", 3: "palette", 4: "gray+alpha", 6: "rgba"}


def _check_png(head: bytes, tail: bytes, tail_start: int, size: int) -> tuple[str, str | None]:
    if len(head) < 33 or head[12:16] != b"IHDR":
        return "", f"has a corrupt PNG header; {CONVERT}"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    depth, colour, interlaced = head[24], head[25], head[28]
    detail = f"{depth}-bit {_PNG_COLOURS.get(colour, 'unknown')}" + (
        " interlaced" * bool(interlaced)
    )
    if width == 0 or height == 0 or colour not in _PNG_COLOURS:
        return detail, f"has a corrupt PNG header; {CONVERT}"
    end = tail.rfind(b"IEND")
    if end < 0 or tail_start + end < 33:
        return detail, _TRUNCATED.format(what="no PNG end chunk IEND")
    return detail, None


def _check_gif(head: bytes, tail: bytes, tail_start: int, size: int) -> tuple[str, str | None]:
    if len(head) < 14:
        return "", _TRUNCATED.format(what="no GIF image data")
    if not tail.rstrip(b"\x00").endswith(b";"):
        return "", _TRUNCATED.format(what="no GIF trailer byte 3B at its end")
    return "", None


def _check_bmp(head: bytes, tail: bytes, tail_start: int, size: int) -> tuple[str, str | None]:
    """Apply TensorFlow's own BMP rules: 8/24/32-bit, uncompressed, exact file size."""
    if len(head) < 54:
        return "", _TRUNCATED.format(what="shorter than a BMP header")
    offset, header_size = _le(head, 10, 4), _le(head, 14, 4)
    if header_size < 40:
        return "os/2", f"is an OS/2 BMP, which TensorFlow cannot decode; {CONVERT}"
    width, height = _le(head, 18, 4, signed=True), _le(head, 22, 4, signed=True)
    bits, compression = _le(head, 28, 2), _le(head, 30, 4)
    detail = f"{bits}-bit"
    if bits not in (8, 24, 32):
        return detail, f"is a {bits}-bit BMP, which TensorFlow cannot decode; {CONVERT}"
    if compression not in (0, 3):
        return detail, f"is a compressed BMP, which TensorFlow cannot decode; {CONVERT}"
    if compression == 3 and head[54:66] != bytes.fromhex("0000ff00 00ff0000 ff000000"):
        return detail, (
            f"is a BMP with an unusual channel layout, which TensorFlow would read "
            f"with wrong colours; {CONVERT}"
        )
    if bits == 8:
        detail = "8-bit palette"
        if not _gray_palette(head, 14 + header_size, offset, _le(head, 46, 4)):
            return detail, (
                f"is a palette BMP, which TensorFlow would read with wrong colours "
                f"(it ignores the palette); {CONVERT}"
            )
        detail = "8-bit gray"
    if width <= 0 or height == 0:
        return detail, f"has a corrupt BMP header; {CONVERT}"
    expected = offset + (bits // 8 * width + 3) // 4 * 4 * abs(height)
    if size < expected:
        return detail, _TRUNCATED.format(what=f"{size} of {expected} bytes")
    if size > expected:
        return detail, (
            f"has {size - expected} bytes after its pixel data, which TensorFlow's "
            f"BMP decoder rejects; {CONVERT}"
        )
    return detail, None


def _gray_palette(head: bytes, start: int, end: int, used: int) -> bool:
    entries = min(used or 256, 256, max(0, (end - start) // 4))
    table = head[start : start + 4 * entries]
    return all(table[4 * i : 4 * i + 3] == bytes((i, i, i)) for i in range(len(table) // 4))


def _check_webp(head: bytes, tail: bytes, tail_start: int, size: int) -> tuple[str, str | None]:
    if size < _le(head, 4, 4) + 8:
        return "", _TRUNCATED.format(what=f"{size} of {_le(head, 4, 4) + 8} bytes")
    if head[12:16] == b"VP8X" and len(head) > 20 and head[20] & 0x02:
        return "animated", f"is an animated WebP, which TensorFlow cannot decode as RGB; {CONVERT}"
    return "", None


def _le(data: bytes, at: int, n: int, signed: bool = False) -> int:
    return int.from_bytes(data[at : at + n], "little", signed=signed)


_CHECKERS: dict[str, Checker] = {
    "jpeg": _check_jpeg,
    "png": _check_png,
    "gif": _check_gif,
    "bmp": _check_bmp,
    "webp": _check_webp,
}
