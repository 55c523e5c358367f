"""The Python block of docs/predictors.md, run, prints the text block that follows it."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "predictors.md"


def test_docs_example_prints_what_docs_show(capsys):
    text = DOC.read_text()
    pattern = r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```"
    code, shown = re.search(pattern, text, re.S).groups()
    exec(compile(code, str(DOC), "exec"), {})
    assert capsys.readouterr().out == shown
