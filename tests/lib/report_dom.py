# SPDX-License-Identifier: Apache-2.0
"""Reading the HTML report back: its nodes and its matrix cells, from the page source or from a browser's DOM dump."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Dict, List, Set, Tuple


class ReportDom(HTMLParser):
    """Collects every element's tag and attributes, and the text of each element of class ``failgroup``."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: List[Tuple[str, Dict[str, str]]] = []
        self.groups: List[Dict[str, object]] = []
        self._stack: List[Dict[str, object]] = []
        self._title: List[str] = []
        self._in_title = False
        self.title_texts: List[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        found = {k: (v if v is not None else "") for k, v in attrs}
        self.elements.append((tag, found))
        if tag == "title":
            self._in_title, self._title = True, []
        classes = found.get("class", "").split()
        if tag == "li" and self._stack and "failgroup" not in classes:
            self._stack[-1]["_depth"] = int(self._stack[-1].get("_depth", 0)) + 1
        if "failgroup" in classes:
            group = {"sources": json.loads(found["data-sources"]), "cells": []}
            self.groups.append(group)
            self._stack.append(group)
        elif "cell" in classes and self._stack:
            self._stack[-1]["cells"].append(found)

    def handle_data(self, data):
        if self._in_title:
            self._title.append(data)

    def handle_endtag(self, tag):
        if tag == "title" and self._in_title:
            self.title_texts.append("".join(self._title))
            self._in_title = False
        # a failgroup is an <li> holding a nested <ul> of <li>: close it at its own </li>
        if tag == "li" and self._stack:
            depth = int(self._stack[-1].get("_depth", 0))
            if depth == 0:
                self._stack.pop()
            else:
                self._stack[-1]["_depth"] = depth - 1

    def nodes(self) -> Set[str]:
        return {a["data-node"] for _t, a in self.elements if "node" in a.get("class", "").split() and "data-node" in a}

    def cells(self, state: str) -> Set[Tuple[str, int, str, str]]:
        """(check, family, source, target) of every cell in ``state``: grid cells, and the failing cells of the
        grouped form (each group's sources times its targets)."""
        out = set()
        for _tag, a in self.elements:
            classes = a.get("class", "").split()
            if "cell" in classes and state in classes and "data-source" in a:
                out.add((a["data-check"], int(a["data-family"]), a["data-source"], a["data-target"]))
        for group in self.groups:
            for cell in group["cells"]:
                if state in cell.get("class", "").split():
                    for source in group["sources"]:
                        out.add((cell["data-check"], int(cell["data-family"]), source, cell["data-target"]))
        return out

    def titles(self) -> List[str]:
        """Every tooltip: title attributes and the text of title elements (an SVG shape's tooltip)."""
        return [a["title"] for _t, a in self.elements if "title" in a] + self.title_texts


def png_pixels(data: bytes) -> Tuple[int, int, Set[Tuple[int, int, int]]]:
    """(width, height, the set of RGB colours) of an 8-bit RGB or RGBA PNG, decoded with the standard library."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, ctype, _c, _f, interlace = header
    assert depth == 8 and ctype in (2, 6) and interlace == 0, "unexpected PNG format %r" % (header,)
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours: Set[Tuple[int, int, int]] = set()
    offset = 0
    for _row in range(height):
        kind = raw[offset]
        line = bytearray(raw[offset + 1:offset + 1 + stride])
        offset += 1 + stride
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            corner = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + pred) & 0xFF
        for i in range(0, stride, bpp):
            colours.add((line[i], line[i + 1], line[i + 2]))
        prev = line
    return width, height, colours
