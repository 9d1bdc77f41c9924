"""TextCodec: the one adapter between text and token ids (wraps a Hugging Face tokenizer)."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers.decoders import DecodeStream


@dataclass(frozen=True)
class TextCodec:
    """Text <-> ids for one tokenizer, plus the special ids the sampler must know by name.

    `frame_prefix`/`frame_suffix` are the special tokens the tokenizer wraps a whole input in
    ([CLS] ... [SEP] for BERT, <s> for Llama, nothing for Qwen). `banned_ids` are ids the sampler
    must never write into a span: every special token except end-of-text (which lets a model end a
    span early), plus ids the tokenizer cannot decode (padded embedding rows).
    """

    tokenizer: Any
    frame_prefix: tuple[int, ...]
    frame_suffix: tuple[int, ...]
    eos_id: int | None
    pad_id: int | None
    mask_id: int | None
    banned_ids: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, mask_id: int | None = None,
                       vocab_size: int | None = None) -> TextCodec:
        """Read the special ids from `tokenizer`; `mask_id` overrides the tokenizer's mask token."""
        if mask_id is None:
            mask_id = getattr(tokenizer, "mask_token_id", None)
        prefix, suffix = _special_frame(tokenizer)
        eos_id = tokenizer.eos_token_id
        # A tokenizer without eos (BERT) ends text with [SEP]; it is not a token to write in a span.
        specials = set(getattr(tokenizer, "all_special_ids", ()) or ())
        specials.update(prefix + suffix)
        if mask_id is not None:
            specials.add(mask_id)
        specials.discard(eos_id)
        size = len(tokenizer)
        extra = range(size, vocab_size) if vocab_size and vocab_size > size else range(0)
        banned = tuple(sorted(specials | set(extra)))
        return cls(tokenizer=tokenizer, frame_prefix=prefix, frame_suffix=suffix, eos_id=eos_id,
                   pad_id=tokenizer.pad_token_id, mask_id=mask_id, banned_ids=banned)

    def encode(self, text: str) -> list[int]:
        """Ids for `text` with no special tokens; empty text gives no ids."""
        if not text:
            return []
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text for `ids`, special tokens dropped (an end-of-text token inside a span ends it)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The decoded text of `ids` cut at token edges, so that "".join(pieces) == decode(ids).

        A byte-level token can end inside a multi-byte character; such a token gets the text
        that is complete after it (possibly ""), and the character goes to the token that ends it.
        tokenizers' DecodeStream does exactly this in one pass (it decodes a short window of recent
        ids, not every prefix). Two things it leaves to us: a character still unfinished after the
        last id (it waits for more ids and returns None; `decode` shows U+FFFD, and so do we), and
        tokenizers without a Rust backend (SentencePiece-only ones), which re-decode each prefix.
        """
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return self._pieces_by_prefix(ids)
        stream = DecodeStream(skip_special_tokens=True)
        out = [stream.step(backend, int(i)) for i in ids]
        if out and out[-1] is None:  # the last character is unfinished: its bytes read as U+FFFD
            out[-1] = self.decode(ids)[sum(len(p or "") for p in out):]
        return [p or "" for p in out]

    def _pieces_by_prefix(self, ids: Sequence[int]) -> list[str]:
        out, done = [], ""
        for i in range(1, len(ids) + 1):
            text = self.decode(ids[:i])
            if text.endswith("\ufffd") and i < len(ids):
                out.append("")  # an unfinished character: wait for the token that completes it
                continue
            out.append(text[len(done):])
            done = text
        return out

    def char_edges(self, text: str, ids: Sequence[int]) -> list[int | None] | None:
        """Where the token edges of `ids` (the tokens of `text`) fall in `text`: len(ids) + 1
        character offsets, None for an edge inside a multi-byte character. None when the tokens do
        not spell `text` byte for byte (a lossy or normalising tokenizer): there is no exact map."""
        pieces = self.tokenizer.convert_ids_to_tokens(list(ids))
        try:
            target = text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        for to_bytes in (byte_level_bytes, sentencepiece_bytes):
            maybe = [to_bytes(p) if isinstance(p, str) else None for p in pieces]
            raw = [r for r in maybe if r is not None]
            if len(raw) < len(maybe) or b"".join(raw) != target:
                continue
            char_at, at = {0: 0}, 0  # byte offset -> character offset, at character edges
            for i, ch in enumerate(text):
                at += len(ch.encode("utf-8"))
                char_at[at] = i + 1
            edges: list[int | None] = [0]
            at = 0
            for r in raw:
                at += len(r)
                edges.append(char_at.get(at))
            return edges
        return None

    def token_text(self, token_id: int) -> str:
        """How one token reads on its own (for token views and inspectors). A byte-level token
        that holds part of a multi-byte character shows its bytes, `<0xE2><0x80>`, the way
        SentencePiece names byte tokens, instead of a replacement character."""
        text = self.tokenizer.decode([int(token_id)], skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)
        if "\ufffd" not in text:
            return text
        piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
        raw = byte_level_bytes(piece) if isinstance(piece, str) else None
        return text if raw is None else "".join(f"<0x{b:02X}>" for b in raw)


def byte_level_bytes(piece: str) -> bytes | None:
    """The bytes behind a GPT-2-style byte-level token string, or None if it is not one. That
    scheme shows printable Latin-1 bytes as themselves and moves the other 68 bytes to the
    code points 256, 257, ... in byte order, so every byte has a visible character."""
    table = _byte_level_table()
    if not piece or any(ch not in table for ch in piece):
        return None
    return bytes(table[ch] for ch in piece)


def sentencepiece_bytes(piece: str) -> bytes | None:
    """The bytes behind a SentencePiece token: "▁" is a space, `<0xNN>` a fallback byte."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            return None
    return piece.replace("\u2581", " ").encode("utf-8")


@functools.cache
def _byte_level_table() -> dict[str, int]:
    visible = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    moved = [b for b in range(256) if b not in visible]
    table = {chr(b): b for b in visible}
    table.update({chr(256 + i): b for i, b in enumerate(moved)})
    return table


def _special_frame(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The special ids a tokenizer puts before and after a body of text."""
    body = list(tokenizer.encode("a", add_special_tokens=False))
    full = list(tokenizer.encode("a", add_special_tokens=True))
    for start in range(len(full) - len(body) + 1):
        if full[start:start + len(body)] == body:
            return tuple(full[:start]), tuple(full[start + len(body):])
    return (), ()


SIDE = 64  # tokens of unchanged text either side of the span in a scored window (`DiffusionLM.fluency`)


def window(codec: TextCodec, document: str, start: int, end: int, side: int = SIDE) -> str:
    """document[start:end] with `side` tokens of the text before and after it."""
    before, after = codec.encode(document[:start]), codec.encode(document[end:])
    return codec.decode(before[-side:]) + document[start:end] + codec.decode(after[:side])
