"""Escaping text for GitHub Markdown: the one function every Markdown writer puts data through.

report.md and `compare --markdown` are pasted into PR comments and job summaries, and the text in
them (host and CPU names, run ids, model names, failure reasons) can come from the pull request's
own code. Escaped here, such text shows as written: no HTML tag opens (`<script>`, `<img onerror>`,
`</details>`), no link, image or emphasis forms, no table cell or line breaks. Pure string work,
no imports, so the compare side and the report side can both use it cheaply.
"""

from __future__ import annotations

#: Markdown punctuation that could start a code span, emphasis, a link or strike-through; a
#: backslash before each makes it literal (CommonMark: any ASCII punctuation may be escaped).
_MARKDOWN_PUNCTUATION = frozenset("\\`*_[]~|")


def escape_markdown(text: object) -> str:
    """`text` as literal Markdown inline text: HTML and Markdown syntax shown, never interpreted.

    `&` and `<` become entities (so no tag or entity is formed), Markdown punctuation gets a
    backslash, and line breaks become spaces (a table row or list item stays one line).
    """
    out = []
    for ch in str(text):
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch in "\r\n":
            out.append(" ")
        elif ch in _MARKDOWN_PUNCTUATION:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)
