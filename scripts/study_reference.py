"""Print the study-file reference (every key, its type and range or allowed values, default, meaning) as Markdown.

    python scripts/study_reference.py            # print it
    python scripts/study_reference.py --write    # replace the block between the study-reference markers in README.md
    python scripts/study_reference.py --check    # exit 1 when README.md's block differs

The text is generated from the schema in nas/study.py, the one that validates study files, so the two cannot drift
apart; tests/nas/test_study_schema.py fails when README.md's block is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from nas.study import reference

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- study-reference:start -->\n)(.*?)(<!-- study-reference:end -->)", re.S)


def main(argv: list[str]) -> int:
    """Print, write or check the reference; 1 when --check finds README.md stale."""
    text = reference()
    if not argv:
        sys.stdout.write(text)
        return 0
    readme = README.read_text()
    match = BLOCK.search(readme)
    if match is None:
        sys.stderr.write(f"{README}: no <!-- study-reference:start --> ... <!-- study-reference:end --> block\n")
        return 1
    if argv == ["--check"]:
        if match.group(2) != text:
            sys.stderr.write(f"{README}: the study reference is stale; run python scripts/study_reference.py --write\n")
            return 1
        return 0
    if argv == ["--write"]:
        README.write_text(readme[:match.start(2)] + text + readme[match.end(2):])
        return 0
    sys.stderr.write("usage: python scripts/study_reference.py [--write | --check]\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
