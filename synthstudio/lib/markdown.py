"""A small, safe Markdown subset for text people write for each other (a project's guidelines, label descriptions).

Paragraphs (a blank line between them; single line breaks are kept), lists (lines starting ``- ``, ``* `` or
``1. ``), ``**bold**``, ``*italic*`` / ``_italic_``, ```code``` and ``[links](https://...)`` with http(s) addresses
only. The whole text is HTML-escaped before any of it is turned into markup, and the only markup produced is the
fixed tags below, so no input can add an element, an attribute or a ``javascript:`` link. No pattern backtracks across
more than one line.
"""
import re
from html import escape

BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")
CODE = re.compile(r"`([^`\n]+)`")
# On escaped text: the address cannot hold a space, a quote (now &quot;) or a bracket, so it cannot leave href="".
LINK = re.compile(r"\[([^\[\]\n]+)\]\((https?://[^\s()\[\]]+)\)")
BOLD = re.compile(r"\*\*(?=\S)([^*\n]+?)(?<=\S)\*\*")
ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")


def render_markdown(text: str) -> str:
    """``text`` as HTML (a string the caller may mark safe: everything in it was escaped first)."""
    blocks = []
    for block in re.split(r"\n[ \t]*\n", (text or "").replace("\r\n", "\n").strip()):
        blocks.extend(_block(block.split("\n")))
    return "\n".join(blocks)


def _block(lines: list[str]) -> list[str]:
    """One block, as paragraphs and lists: runs of list lines become a list, runs of other lines a paragraph."""
    out, paragraph, items, kind = [], [], [], None

    def close_list():
        nonlocal items, kind
        if items:
            out.append(f"<{kind}>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + f"</{kind}>")
        items, kind = [], None

    def close_paragraph():
        nonlocal paragraph
        if paragraph:
            out.append("<p>" + "<br>".join(_inline(line) for line in paragraph) + "</p>")
        paragraph = []

    for line in lines:
        bullet, numbered = BULLET.match(line), NUMBERED.match(line)
        match, this_kind = (bullet, "ul") if bullet else (numbered, "ol") if numbered else (None, None)
        if match:
            close_paragraph()
            if kind != this_kind:
                close_list()
            kind = this_kind
            items.append(match.group(1))
        elif line.strip():
            if items and line.startswith((" ", "\t")):
                items[-1] += " " + line.strip()  # a wrapped list item
                continue
            close_list()
            paragraph.append(line.strip())
    close_list()
    close_paragraph()
    return out


def _inline(text: str) -> str:
    """Escape ``text``, then turn code spans, links, bold and italic into markup; code spans are left as they are."""
    parts = CODE.split(text)
    return "".join(f"<code>{escape(part)}</code>" if i % 2 else _emphasis(escape(part)) for i, part in enumerate(parts))


def _emphasis(escaped: str) -> str:
    """Links first, each set aside while bold and italic are applied, so an address keeps its ``*`` and ``_``."""
    links = []

    def set_aside(match):
        links.append(f'<a href="{match.group(2)}" rel="noopener noreferrer" target="_blank">'
                     f"{_bold_italic(match.group(1))}</a>")
        return f"\x00{len(links) - 1}\x00"

    marked = _bold_italic(LINK.sub(set_aside, escaped.replace("\x00", "")))
    return re.sub(r"\x00(\d+)\x00", lambda match: links[int(match.group(1))], marked)


def _bold_italic(escaped: str) -> str:
    escaped = BOLD.sub(r"<strong>\1</strong>", escaped)
    escaped = ITALIC_STAR.sub(r"<em>\1</em>", escaped)
    return ITALIC_UNDERSCORE.sub(r"<em>\1</em>", escaped)
