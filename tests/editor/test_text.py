"""Validation at the edge: documents, spans and UTF-16 offsets."""

import pytest

from editor.text import (
    MAX_DOCUMENT_BYTES,
    BadSpan,
    BinaryDocument,
    ByteIndex,
    DocumentTooLarge,
    EditorError,
    NotUtf8,
    check_document,
    check_span,
    index_to_utf16,
    utf16_to_index,
)


def test_check_document_accepts_text_and_rejects_bad_input() -> None:
    assert check_document("héllo 😀") == "héllo 😀"
    assert check_document("héllo 😀".encode()) == "héllo 😀"
    with pytest.raises(BinaryDocument, match="NUL byte at byte 3"):
        check_document(b"abc\x00def")
    with pytest.raises(BinaryDocument):
        check_document("a\x00")
    with pytest.raises(NotUtf8, match=r"byte 1 \(0xff\)"):
        check_document(b"a\xffb")
    with pytest.raises(NotUtf8):
        check_document("lone \udc80 surrogate")
    with pytest.raises(DocumentTooLarge, match="limit is 1,048,576 bytes"):
        check_document("x" * (MAX_DOCUMENT_BYTES + 1))
    assert check_document("é" * (MAX_DOCUMENT_BYTES // 2)) == "é" * (MAX_DOCUMENT_BYTES // 2)
    for cls in (BinaryDocument, NotUtf8, DocumentTooLarge, BadSpan):
        assert issubclass(cls, EditorError) and issubclass(cls, ValueError)


def test_check_span_messages() -> None:
    assert check_span("abc", 0, 3) == (0, 3)
    with pytest.raises(BadSpan, match="outside the document"):
        check_span("abc", 1, 4)
    with pytest.raises(BadSpan, match="outside the document"):
        check_span("abc", -1, 2)
    with pytest.raises(BadSpan, match="reversed"):
        check_span("abc", 2, 1)
    with pytest.raises(BadSpan, match="integers"):
        check_span("abc", 0, 1.5)  # type: ignore[arg-type]


def test_utf16_round_trip() -> None:
    text = "a😀é👍🏽b"
    js_offsets = [0, 1, 3, 4, 6, 8, 9]  # what a browser's selectionStart reports at each character
    for index, units in enumerate(js_offsets):
        assert index_to_utf16(text, index) == units
        assert utf16_to_index(text, units) == index
    with pytest.raises(BadSpan, match="splits the character"):
        utf16_to_index(text, 2)
    with pytest.raises(BadSpan, match="outside the document"):
        utf16_to_index(text, 10)


def test_byte_index() -> None:
    text = "aé😀b"
    index = ByteIndex(text)
    for i in range(len(text) + 1):
        assert index.to_char(index.to_byte(i)) == i
        assert index.to_byte(i) == len(text[:i].encode())
