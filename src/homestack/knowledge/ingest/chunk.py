"""Chunks that follow a document's structure, sized in embedding-model tokens.

Blocks with the same page and heading path form a section; chunks never cross
sections, so each has one page and one heading. Inside a section, text is cut
into paragraphs, paragraphs into sentences, overlong sentences into token
windows; sentences are packed greedily up to ``size`` tokens, a chunk that is
already well filled ends at a paragraph break rather than splitting the next
paragraph, and each chunk starts with the previous one's last sentences, up to
``overlap`` tokens (``lead`` tells how many characters of a chunk's text they are).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby

from .parse import Block
from .tokens import TokenCounter

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?;:。])\s+|\n(?=\s*(?:[-*+•]|\d+[.)])\s)")
_FILL_BEFORE_BREAK = 0.6  # a chunk this full ends at a paragraph break that would not fit


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int
    end: int
    position: int
    tokens: int
    page: int | None = None
    heading: tuple[str, ...] = ()
    lead: int = 0  # characters at the start of text repeated from the previous chunk (the overlap)


@dataclass(frozen=True)
class _Unit:
    text: str
    start: int
    end: int
    tokens: int
    paragraph: int  # index of the paragraph it belongs to


def chunk_blocks(blocks: list[Block], counter: TokenCounter, size: int, overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for (page, heading), section in groupby(blocks, key=lambda b: (b.page, b.heading)):
        for start, end, text, tokens, lead in _pack(_units(list(section), counter, size), size, overlap):
            chunks.append(Chunk(text, start, end, len(chunks), tokens, page, heading, lead))
    return chunks


def _spans(text: str, pattern: re.Pattern[str], base: int) -> list[tuple[int, int]]:
    """Non-blank pieces of ``text`` between matches of ``pattern``, as absolute offsets."""
    spans, pos = [], 0
    for match in [*pattern.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[pos:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((base + pos + lead, base + pos + len(piece.rstrip())))
        pos = match.end() if match else pos
    return spans


def _units(section: list[Block], counter: TokenCounter, size: int) -> list[_Unit]:
    sentences: list[tuple[str, int, int, int]] = []  # text, start, end, paragraph
    paragraph = 0
    for block in section:
        for p_start, p_end in _spans(block.text, _PARAGRAPH, 0):
            for s_start, s_end in _spans(block.text[p_start:p_end], _SENTENCE_END, p_start):
                sentences.append((block.text[s_start:s_end], block.start + s_start, block.start + s_end, paragraph))
            paragraph += 1
    units: list[_Unit] = []
    for (text, start, end, para), offsets in zip(sentences, counter.offsets([s[0] for s in sentences])):
        if len(offsets) <= size:
            units.append(_Unit(text, start, end, len(offsets), para))
            continue
        for i in range(0, len(offsets), size):  # a "sentence" longer than a chunk: token windows
            window = offsets[i:i + size]
            a, b = window[0][0], window[-1][1]
            units.append(_Unit(text[a:b], start + a, start + b, len(window), para))
    return units


def _pack(units: list[_Unit], size: int, overlap: int):
    paragraph_tokens: dict[int, int] = {}
    for u in units:
        paragraph_tokens[u.paragraph] = paragraph_tokens.get(u.paragraph, 0) + u.tokens
    current: list[_Unit] = []
    used = carried = 0
    for i, unit in enumerate(units):
        starts_paragraph = i > 0 and units[i - 1].paragraph != unit.paragraph
        full = used + unit.tokens > size
        early_break = starts_paragraph and used >= _FILL_BEFORE_BREAK * size and used + paragraph_tokens[unit.paragraph] > size
        if current and (full or early_break):
            yield _joined(current, used, carried)
            current = _tail(current, overlap, size - unit.tokens)
            used, carried = sum(u.tokens for u in current), len(current)
        current.append(unit)
        used += unit.tokens
    if current:
        yield _joined(current, used, carried)


def _tail(units: list[_Unit], overlap: int, room: int) -> list[_Unit]:
    """The last units of a chunk, within ``overlap`` tokens and the room left beside the next unit."""
    tail: list[_Unit] = []
    total = 0
    for unit in reversed(units[1:]):  # never the whole chunk again
        if total + unit.tokens > min(overlap, room):
            break
        tail.insert(0, unit)
        total += unit.tokens
    return tail


def _joined(units: list[_Unit], tokens: int, carried: int) -> tuple[int, int, str, int, int]:
    """The chunk's offsets, text and tokens, and where in its text the ``carried`` first units end."""
    parts, lead = [], 0
    for i, unit in enumerate(units):
        if i:
            parts.append("\n\n" if unit.paragraph != units[i - 1].paragraph else " ")
        if i == carried and i:
            lead = sum(map(len, parts))
        parts.append(" ".join(unit.text.split()))
    return units[0].start, units[-1].end, "".join(parts), tokens, lead
