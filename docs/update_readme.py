"""Re-run the commands whose output the README shows, and paste the output back in.

    python docs/update_readme.py

A block in README.md written as

    <!-- casc: run hypotheses/xor/second_bit.yaml -->
    ```text
    ...
    ```
    <!-- /casc -->

is replaced by ``$ casc run hypotheses/xor/second_bit.yaml`` followed by what
that command prints (several commands: separate them with `` ; ``). Run it
from the repository root after anything that changes figures or tables.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- casc: (?P<commands>.*?) -->\n.*?<!-- /casc -->", re.S)
FOOTER = re.compile(r"^(per-sample gap = |\(docs/diagnostics\.md\)).*\n?", re.M)


def render(commands: str) -> str:
    out = []
    for command in commands.split(" ; "):
        result = subprocess.run(
            [sys.executable, "-c", "from casc_cli.cli import main; main()", *shlex.split(command)],
            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "180"},
            check=False)
        text = FOOTER.sub("", result.stdout + result.stderr)
        text = "\n".join(line.rstrip() for line in text.rstrip().splitlines())
        out.append(f"$ casc {command}\n{text}")
    return "\n\n".join(out)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = BLOCK.sub(lambda m: f"<!-- casc: {m['commands']} -->\n```text\n"
                              f"{render(m['commands'])}\n```\n<!-- /casc -->", text)
    readme.write_text(new, encoding="utf-8")
    print(f"updated {len(BLOCK.findall(text))} blocks")


if __name__ == "__main__":
    main()
