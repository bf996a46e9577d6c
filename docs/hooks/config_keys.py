"""MkDocs hook: `<!-- config-keys: STAGE -->` in a page becomes that stage's key table.

The rows come from the pydantic field descriptions (align/config/reference.py), so the docs
never hold a hand-copied description.
"""

import re

from align.config import STAGE_CONFIGS
from align.config.reference import markdown_table

MARKER = re.compile(r"<!-- config-keys: (\w+) -->")


def on_page_markdown(markdown, page, config, files):
    def table(match):
        stage = match.group(1)
        if stage not in STAGE_CONFIGS:
            raise ValueError(f"{page.file.src_path}: no stage {stage!r} (known: {', '.join(STAGE_CONFIGS)})")
        return markdown_table(STAGE_CONFIGS[stage])

    return MARKER.sub(table, markdown)
