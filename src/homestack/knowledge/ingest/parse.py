"""Documents to blocks: text with its page, heading path and character offset.

Offsets index the text a block was cut from: the file itself for Markdown and
plain text, the page's extracted text for PDF, the extracted text for HTML.
PDF text comes from pdfium (pypdfium2), headings from its outline; Markdown is
parsed by markdown-it-py; HTML by selectolax (lexbor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from ...errors import BadRequest

FORMATS = {
    ".pdf": "pdf", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
    ".txt": "text", ".text": "text", ".rst": "text",
}
_HTML_BLOCKS = frozenset("p li pre blockquote td th dt dd figcaption caption".split())
_HTML_SKIP = frozenset("script style noscript template nav header footer svg".split())


@dataclass(frozen=True)
class Block:
    text: str
    start: int
    page: int | None = None
    heading: tuple[str, ...] = ()


class ParseError(BadRequest):
    code = "unparseable_document"


def format_of(source: str, declared: str | None = None) -> str:
    if declared:
        if declared not in set(FORMATS.values()):
            raise BadRequest(f"unknown format {declared!r}; one of: pdf, markdown, html, text", param="format")
        return declared
    return FORMATS.get(PurePath(source).suffix.lower(), "text")


def parse(data: bytes, fmt: str, source: str) -> list[Block]:
    """Blocks of a document; ``ParseError`` names the source when it cannot be read."""
    try:
        if fmt == "pdf":
            return _pdf(data)
        text = _decode(data)
        return {"markdown": _markdown, "html": _html, "text": _text}[fmt](text)
    except Exception as exc:  # every parser's own errors: one clear line naming the file
        raise ParseError(f"{source}: cannot parse as {fmt}: {exc}") from None


def _decode(data: bytes) -> str:
    if b"\0" in data[:4096]:
        raise ValueError("binary content (not a PDF, Markdown, HTML or text file)")
    return data.decode("utf-8", errors="replace")


def _text(text: str) -> list[Block]:
    return [Block(text, 0)] if text.strip() else []


def _markdown(text: str) -> list[Block]:
    from markdown_it import MarkdownIt

    line_starts = [0]
    for line in text.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []  # (level, title) of the headings above
    for i, token in enumerate(tokens):
        if token.level != 0 or token.map is None or token.nesting == -1:
            continue
        if token.type == "heading_open":
            level = int(token.tag[1])
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, tokens[i + 1].content.strip())]
            continue
        start, end = line_starts[token.map[0]], line_starts[min(token.map[1], len(line_starts) - 1)]
        if text[start:end].strip():
            blocks.append(Block(text[start:end], start, None, tuple(title for _, title in path)))
    return blocks


def _html(html: str) -> list[Block]:
    from selectolax.lexbor import LexborHTMLParser

    root = LexborHTMLParser(html).body
    if root is None:
        return []
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    offset = 0

    def emit(text: str) -> None:
        nonlocal offset
        blocks.append(Block(text, offset, None, tuple(title for _, title in path)))
        offset += len(text) + 2  # blocks are joined by a blank line in the extracted text

    def walk(node) -> None:
        nonlocal path
        for child in node.iter(include_text=False):
            tag = child.tag
            if tag in _HTML_SKIP:
                continue
            if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
                title = _html_text(child)
                level = int(tag[1])
                path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
            elif tag in _HTML_BLOCKS:
                text = _html_text(child)
                if text:
                    emit(text)
            else:
                direct = "".join(t.text_content or "" for t in child.iter(include_text=True) if t.tag == "-text").strip()
                if direct:  # text right inside a div or section, beside its blocks
                    emit(" ".join(direct.split()))
                walk(child)

    walk(root)
    return blocks


def _html_text(node) -> str:
    return " ".join(node.text(separator="").split())


def _pdf(data: bytes) -> list[Block]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        headings = _pdf_outline(pdf)
        blocks, path = [], ()
        for index in range(len(pdf)):
            path = headings.get(index, path)
            page = pdf[index]
            text = page.get_textpage().get_text_bounded().replace("\r\n", "\n")
            page.close()
            if text.strip():
                blocks.append(Block(text, 0, index + 1, path))
        return blocks
    finally:
        pdf.close()


def _pdf_outline(pdf) -> dict[int, tuple[str, ...]]:
    """Page index -> heading path of the last outline entry that starts on or before it."""
    starts: dict[int, tuple[str, ...]] = {}
    stack: list[str] = []
    for bookmark in pdf.get_toc():
        stack = stack[: bookmark.level] + [bookmark.get_title().strip()]
        dest = bookmark.get_dest()
        index = dest.get_index() if dest is not None else None
        if index is not None:
            starts[index] = tuple(stack)
    return starts
