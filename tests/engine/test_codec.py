"""TextCodec.pieces over arbitrary ids: token-edge cuts that always add up to the decoded text."""
import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import TextCodec
from tests.tiny import byte_bpe_tokenizer


@functools.cache
def codec() -> TextCodec:
    return TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(codec().tokenizer) - 1), max_size=16))
def test_pieces_of_any_ids_add_up_to_the_decoded_prefixes(ids):
    """Random ids hold half characters and stray continuation bytes: each token's piece ends where the
    decoded prefix is whole, an unfinished character waits for the token that ends it (or the end)."""
    pieces = codec().pieces(ids)
    assert len(pieces) == len(ids) and "".join(pieces) == codec().decode(ids)
    for i in range(len(ids) - 1):
        prefix = codec().decode(ids[:i + 1])
        if not prefix.endswith("\ufffd"):
            assert "".join(pieces[:i + 1]) == prefix
