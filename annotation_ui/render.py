"""Show untrusted model output as Markdown without letting it become HTML.

Everything outside code spans/fences is HTML-escaped, so `<script>` or `<img onerror=...>`
appears as text; inside code the Markdown renderer escapes it itself (escaping twice would
show `&lt;` to the annotator). Gradio's own sanitiser stays on as a second layer.
"""

from __future__ import annotations

import html
import re

_CODE = re.compile(r"(```[\s\S]*?```|`[^`\n]+`)")


def safe_markdown(text: str) -> str:
    parts = _CODE.split(text)
    # split() with one capture group alternates: text, code, text, code, ...
    return "".join(part if index % 2 else html.escape(part, quote=False) for index, part in enumerate(parts))


def progress_line(done: int, available: int, items_left: int, total: int) -> str:
    """'12 of 50 done' for this annotator, plus what is left overall."""
    return f"**{done} of {done + available} done** · {items_left} of {total} items still need rankings"
