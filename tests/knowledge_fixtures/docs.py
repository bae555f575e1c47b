"""Small test documents, generated (no binaries in the repository): a 3-page PDF
with an outline, Markdown with nested headings, HTML, plain text, and a broken PDF."""

from __future__ import annotations

from pathlib import Path

PDF_PAGES = [
    ("Introduction", "The Zephyr handbook describes the Zephyr robotic arm built by Northwind Robotics. "
                     "It covers installation, maintenance and the warranty."),
    ("Maintenance", "The Zephyr arm needs a maintenance service every 450 operating hours. During the service "
                    "the technician replaces the joint lubricant and recalibrates the gripper sensors."),
    ("Warranty", "Northwind Robotics grants a warranty of three years on every Zephyr arm. The warranty does not "
                 "cover damage caused by operating the arm underwater."),
]

MARKDOWN = """# Garden guide

A short guide to a vegetable garden.

## Tomatoes

Tomatoes need six hours of direct sunlight a day. Water them every morning at the base of the plant,
never on the leaves.

### Pests

Aphids on tomato plants are removed with a spray of soapy water.

## Potatoes

Potatoes are planted in early spring, thirty centimetres apart, in loose and well drained soil.
"""

HTML = """<html><head><title>Bread</title><style>p {color: red}</style></head><body>
<h1>Sourdough bread</h1>
<p>Sourdough bread rises with a starter of flour and water instead of baker's yeast.</p>
<h2>Baking</h2>
<p>Bake the loaf at 250 degrees Celsius for twenty minutes with steam, then forty minutes without.</p>
<script>var ignored = "the oven temperature is 999 degrees";</script>
</body></html>
"""

TEXT = "Meeting notes. The quarterly budget review moved to the first Tuesday of October.\n"


def pdf_bytes(pages: list[tuple[str, str]] = PDF_PAGES) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for title, body in pages:
        pdf.add_page()
        pdf.start_section(title)
        pdf.multi_cell(0, 8, body)
    return bytes(pdf.output())


def write_corpus(folder: Path) -> dict[str, Path]:
    """The four documents in ``folder`` (a PDF, Markdown, HTML, text); returns them by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "pdf": folder / "zephyr-handbook.pdf", "markdown": folder / "garden.md",
        "html": folder / "bread.html", "text": folder / "notes.txt",
    }
    files["pdf"].write_bytes(pdf_bytes())
    files["markdown"].write_text(MARKDOWN)
    files["html"].write_text(HTML)
    files["text"].write_text(TEXT)
    return files
