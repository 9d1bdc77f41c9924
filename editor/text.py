"""Validation at the edge: document checks, span checks, UTF-16 <-> character offsets."""

from __future__ import annotations

import bisect

MAX_DOCUMENT_BYTES = 1024 * 1024  # 1 MiB of UTF-8: far beyond what a diffusion model can hold in context


class EditorError(ValueError):
    """Base of every error the editor raises for bad input or a refused operation."""


class BinaryDocument(EditorError):
    """The data holds NUL bytes, so it is not a text document."""


class NotUtf8(EditorError):
    """The bytes do not decode as UTF-8."""


class DocumentTooLarge(EditorError):
    """The document is over MAX_DOCUMENT_BYTES."""


class BadSpan(EditorError):
    """A span is reversed, not integer, or lies outside the document."""


def check_document(data: bytes | str, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """Return the document as str, or raise a subclass of EditorError saying what is wrong."""
    if isinstance(data, str):
        if "\x00" in data:
            at = data.index("\x00")
            raise BinaryDocument(f"the document holds a NUL character at index {at}: binary data is not text")
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates from a broken client
            raise NotUtf8(f"the document is not valid Unicode at index {e.start}: {e.reason}") from None
        text = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if b"\x00" in raw:
            raise BinaryDocument(f"the document holds a NUL byte at byte {raw.index(0)}: binary data is not text")
        text = ""
    else:
        raise TypeError(f"a document is bytes or str, not {type(data).__name__}")
    if len(raw) > max_bytes:
        raise DocumentTooLarge(f"the document is {len(raw):,} bytes; the limit is {max_bytes:,} bytes")
    if not isinstance(data, str):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NotUtf8(f"the document is not UTF-8: byte {e.start} ({raw[e.start]:#04x}) {e.reason}") from None
    return text


def check_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Return (start, end) if it is a valid character span of text, else raise BadSpan."""
    if isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) or not isinstance(end, int):
        raise BadSpan(f"span ({start!r}, {end!r}) must be two integers")
    if start > end:
        raise BadSpan(f"span ({start}, {end}) is reversed: start is after end")
    if start < 0 or end > len(text):
        raise BadSpan(f"span ({start}, {end}) is outside the document (0 to {len(text)} characters)")
    return start, end


def _units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def utf16_to_index(text: str, offset: int) -> int:
    """Character (code point) index of a UTF-16 code-unit offset, as a browser counts them.

    An offset that falls between the two halves of a surrogate pair is refused (BadSpan).
    """
    if offset < 0:
        raise BadSpan(f"UTF-16 offset {offset} is outside the document")
    units = 0
    for i, ch in enumerate(text):
        if units == offset:
            return i
        units += _units(ch)
        if units > offset:
            raise BadSpan(f"UTF-16 offset {offset} splits the character at index {i} ({ch!r})")
    if units == offset:
        return len(text)
    raise BadSpan(f"UTF-16 offset {offset} is outside the document ({units} code units)")


def index_to_utf16(text: str, index: int) -> int:
    """UTF-16 code-unit offset of a character index."""
    if index < 0 or index > len(text):
        raise BadSpan(f"index {index} is outside the document (0 to {len(text)} characters)")
    return index + sum(1 for ch in text[:index] if ord(ch) > 0xFFFF)


class ByteIndex:
    """Converts UTF-8 byte offsets of one text to character offsets (tree-sitter counts bytes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._ascii = text.isascii()
        if not self._ascii:
            starts: list[int] = []
            pos = 0
            for ch in text:
                starts.append(pos)
                pos += len(ch.encode("utf-8"))
            self._starts = starts
            self._total = pos

    def to_char(self, byte: int) -> int:
        """Character index of a byte offset; a byte inside a character maps to that character's start."""
        if self._ascii:
            return byte
        if byte >= self._total:
            return len(self.text)
        return bisect.bisect_right(self._starts, byte) - 1

    def to_byte(self, index: int) -> int:
        if self._ascii:
            return index
        return self._total if index >= len(self.text) else self._starts[index]
