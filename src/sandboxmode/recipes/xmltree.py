"""XML recipe: parse a document into a plain element tree with `xml.parsers.expat`.

Any DOCTYPE is refused (`ForbiddenDTD`) as soon as expat reports it, before its internal
subset is read: no entity is ever declared, so entity expansion bombs ("billion laughs",
quadratic blowup) and external entities (files, URLs) cannot happen. Parameter entity
parsing is off and external entity references are refused as well. Element depth and
count are limited. Names are kept as written (no namespace processing: ``ns:tag`` and
``xmlns:ns`` attributes as in the document).
"""

from __future__ import annotations

# Codecs expat may ask Python for (an XML declaration naming a non-UTF encoding): looked up
# lazily by the codec registry, so imported here; an import inside the sandbox is a
# PolicyViolation.
import encodings.cp1251
import encodings.cp1252
import encodings.iso8859_2
import encodings.iso8859_15
import re
import sys
from typing import Any
from xml.parsers import expat

from sandboxmode._target import sandboxed
from sandboxmode.policy import Policy
from sandboxmode.recipes.errors import (
    CorruptInput,
    ForbiddenDTD,
    TooDeep,
    TooManyElements,
    Unsupported,
)

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_ELEMENTS", "parse_xml", "parse_xml_direct"]

_CODECS = (encodings.cp1251, encodings.cp1252, encodings.iso8859_2, encodings.iso8859_15)

_DECL = re.compile(rb"""\s*<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._-]{1,40})["']""")
_NATIVE = {"utf-8", "utf8", "utf-16", "utf16", "iso-8859-1", "latin-1", "latin1", "us-ascii",
           "ascii"}

DEFAULT_MAX_DEPTH = 100
"""Default deepest element nesting (the root is depth 1)."""

DEFAULT_MAX_ELEMENTS = 100_000
"""Default most elements in a document."""

# Each element is two levels of the result (dict, then its children list) and about a
# dozen values: room for the default limits.
_POLICY = Policy(max_depth=2 * DEFAULT_MAX_DEPTH + 8, max_items=8_000_000)


class _Builder:
    """Expat callbacks building ``{"tag", "attrib", "text", "tail", "children"}`` nodes."""

    def __init__(self, max_depth: int, max_elements: int) -> None:
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.count = 0
        self.root: dict[str, Any] | None = None
        self.stack: list[dict[str, Any]] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.count += 1
        if self.count > self.max_elements:
            raise TooManyElements(f"xml: more than max_elements ({self.max_elements}) elements")
        if len(self.stack) >= self.max_depth:
            raise TooDeep(f"xml: elements nested deeper than max_depth ({self.max_depth})")
        node: dict[str, Any] = {"tag": tag, "attrib": attrib, "text": None, "tail": None,
                                "children": []}
        if self.stack:
            self.stack[-1]["children"].append(node)
        else:
            self.root = node
        self.stack.append(node)

    def end(self, tag: str) -> None:
        self.stack.pop()

    def data(self, text: str) -> None:
        if not self.stack:
            return  # whitespace around the root element (expat refuses anything else)
        parent = self.stack[-1]
        children = parent["children"]
        node, key = (children[-1], "tail") if children else (parent, "text")
        node[key] = text if node[key] is None else node[key] + text


def _refuse_doctype(name: str, *args: object) -> None:
    raise ForbiddenDTD(f"xml: DOCTYPE {name!r} refused (no DTDs, no entity declarations)")


def _refuse_entity(name: str, *args: object) -> None:
    raise ForbiddenDTD(f"xml: entity declaration {name!r} refused")


def _refuse_external(*args: object) -> int:
    raise ForbiddenDTD("xml: external entity reference refused")


def _check_encoding(head: bytes) -> None:
    """Refuse a declared encoding whose codec is not loaded (it would be imported)."""
    m = _DECL.match(head)
    if m is None:
        return
    name = m.group(1).decode("ascii").lower()
    if name in _NATIVE:
        return
    norm = encodings.normalize_encoding(name)
    module = encodings.aliases.aliases.get(norm, norm)
    if f"encodings.{module}" not in sys.modules:
        raise Unsupported(f"xml: encoding {name!r} is not supported here (loaded codecs: "
                          "UTF-8, UTF-16, ISO-8859-1/2/15, ASCII, windows-1251/1252)")


def parse_xml_direct(data: bytes | memoryview, max_depth: int = DEFAULT_MAX_DEPTH,
                     max_elements: int = DEFAULT_MAX_ELEMENTS) -> dict[str, Any]:
    """Parse an XML document into plain data.

    Args:
        data: the document's bytes (encoding from its declaration; UTF-8 by default).
        max_depth: deepest element nesting allowed (default 100).
        max_elements: most elements allowed (default 100,000).

    Returns:
        The root element as ``{"tag": str, "attrib": {name: value}, "text": str | None,
        "tail": str | None, "children": [elements]}`` (ElementTree's text/tail model;
        comments and processing instructions are dropped).

    Raises:
        ForbiddenDTD: the document has a DOCTYPE or declares entities.
        TooDeep: nesting deeper than ``max_depth``.
        TooManyElements: more than ``max_elements`` elements.
        Unsupported: an encoding other than UTF-8/16, ASCII, ISO-8859-1/2/15,
            windows-1251/1252.
        CorruptInput: not well-formed XML (the message gives line and column).
    """
    for name, value in (("max_depth", max_depth), ("max_elements", max_elements)):
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be an int >= 1, not {value!r}")
    _check_encoding(bytes(memoryview(data)[:256]))
    builder = _Builder(max_depth, max_elements)
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(bytes(data), True)
    except expat.ExpatError as e:
        raise CorruptInput(f"xml: {expat.ErrorString(e.code)} at line {e.lineno}, "
                           f"column {e.offset}") from None
    except LookupError as e:
        raise CorruptInput(f"xml: {e}") from None
    if builder.root is None:
        raise CorruptInput("xml: no root element")
    return builder.root


@sandboxed(policy=_POLICY)
def parse_xml(data: bytes | memoryview, max_depth: int = DEFAULT_MAX_DEPTH,
              max_elements: int = DEFAULT_MAX_ELEMENTS) -> dict[str, Any]:
    """`parse_xml_direct` in a fresh sandbox.

    Args:
        data: the document's bytes.
        max_depth: deepest element nesting allowed (default 100; deeper also needs a
            policy with ``max_depth`` of at least twice that plus 8).
        max_elements: most elements allowed (default 100,000).

    Returns:
        The root element as plain data (see `parse_xml_direct`).

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised.
    """
    return parse_xml_direct(data, max_depth, max_elements)
