#!/usr/bin/env python3
"""Scans the QR code SVG of the TOTP setup answer, as an authenticator app would.

Used by tests/mfa_qr.rs to check, end to end, that the picture the server hands
out (src/mfa/qr.rs) really reads back as the otpauth:// URI, with an
independent, real QR decoder (zxing-cpp, from PyPI) rather than our encoder.

Reads one SVG on standard input, rasterizes it here (no SVG library, nothing
that needs system packages): the viewBox gives the size in modules, and the
black path is made of `M{x},{y}h1v1h-1z` squares, one per dark module, on a
white background; each module becomes an 8x8 block of pixels. The decoder then
has to find the code in that image by itself (finder patterns, quiet zone).

Prints exactly the decoded text (no newline added) to standard output.
Exits 1 with a message on standard error if the SVG is not of that form or no
QR code decodes, and 2 if the decoder is missing:
    python3 -m pip install zxing-cpp numpy
"""

import re
import sys
import xml.etree.ElementTree as ET

try:
    import numpy
    import zxingcpp
except ImportError as e:
    sys.stderr.write(
        f"qr_decode.py: the QR decoder is missing ({e}); "
        "install it with: python3 -m pip install zxing-cpp numpy\n"
    )
    sys.exit(2)

PIXELS_PER_MODULE = 8
SVG_NS = "{http://www.w3.org/2000/svg}"
SQUARE = re.compile(r"M(\d+),(\d+)h1v1h-1z")
BLACK = {"#000", "#000000", "black"}


def fail(message):
    sys.stderr.write(f"qr_decode.py: {message}\n")
    sys.exit(1)


def modules(svg_text):
    """The size in modules and the (x, y) of every dark module."""
    try:
        root = ET.fromstring(svg_text)
    except ET.ParseError as e:
        fail(f"standard input is not well-formed XML: {e}")
    if root.tag != SVG_NS + "svg":
        fail(f"the root element is {root.tag!r}, not an SVG <svg>")
    view_box = (root.get("viewBox") or "").split()
    if len(view_box) != 4 or view_box[:2] != ["0", "0"] or view_box[2] != view_box[3]:
        fail(f"expected viewBox=\"0 0 N N\", got {root.get('viewBox')!r}")
    try:
        size = int(view_box[2])
    except ValueError:
        fail(f"the viewBox size {view_box[2]!r} is not a whole number")
    paths = root.findall(SVG_NS + "path")
    if len(paths) != 1:
        fail(f"expected one <path>, found {len(paths)}")
    path = paths[0]
    if path.get("fill") not in BLACK:
        fail(f"expected a black path, got fill={path.get('fill')!r}")
    d = path.get("d") or ""
    squares = []
    end = 0
    for match in SQUARE.finditer(d):
        if match.start() != end:
            break
        squares.append((int(match.group(1)), int(match.group(2))))
        end = match.end()
    if end != len(d):
        fail(f"the path is not only M{{x}},{{y}}h1v1h-1z squares, at: {d[end:end + 40]!r}")
    if not squares:
        fail("the path draws no dark module")
    for x, y in squares:
        if x >= size or y >= size:
            fail(f"the square at {x},{y} is outside the {size}x{size} viewBox")
    return size, squares


def rasterize(size, squares):
    """A grayscale image: white background, each dark module a black block."""
    scale = PIXELS_PER_MODULE
    image = numpy.full((size * scale, size * scale), 255, dtype=numpy.uint8)
    for x, y in squares:
        image[y * scale:(y + 1) * scale, x * scale:(x + 1) * scale] = 0
    return image


def main():
    svg_text = sys.stdin.buffer.read().decode("utf-8")
    image = rasterize(*modules(svg_text))
    found = zxingcpp.read_barcodes(
        image,
        formats=zxingcpp.BarcodeFormat.QRCode,
        text_mode=zxingcpp.TextMode.Plain,
    )
    if not found:
        fail("no QR code decodes from this SVG")
    if len(found) != 1:
        fail(f"expected one QR code, decoded {len(found)}")
    sys.stdout.write(found[0].text)


if __name__ == "__main__":
    main()
