"""Writers of the image files Pillow cannot write: 16-bit colour PNG and TIFF (uncompressed)."""

import struct
import zlib

import numpy as np


def write_png16(path, arr):
    """arr: uint16 (H, W, C) with C in 1 (grey), 2 (grey + alpha), 3 (RGB), 4 (RGBA)."""
    h, w, c = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def write_tiff_rgb16(path, arr):
    """arr: uint16 (H, W, 3), written as one little-endian uncompressed strip."""
    h, w, c = arr.shape
    data = arr.astype("<u2").tobytes()
    entries = 11
    extra = 8 + 2 + entries * 12 + 4  # offset of the BitsPerSample and SampleFormat arrays
    data_offset = extra + 2 * 2 * c
    tags = [
        (256, 4, 1, w),
        (257, 4, 1, h),
        (258, 3, c, extra),  # BitsPerSample: 16, 16, 16
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, data_offset),
        (277, 3, 1, c),
        (278, 4, 1, h),
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),  # chunky
        (339, 3, c, extra + 2 * c),  # SampleFormat: unsigned
    ]
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", entries)
    for tag, kind, count, value in tags:
        if kind == 3 and count == 1:
            out += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            out += struct.pack("<HHII", tag, kind, count, value)
    out += struct.pack("<I", 0) + struct.pack("<" + "H" * c, *[16] * c)
    out += struct.pack("<" + "H" * c, *[1] * c) + data
    with open(path, "wb") as f:
        f.write(out)


def ramp16(h, w, c=1, seed=0):
    """uint16 pixels spread over the whole 16-bit range, none of them 0 or 65535."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, 65535, size=(h, w, c), dtype=np.uint16)
