"""README's headline example runs and prints exactly what README shows (docs that run)."""

import re
import shlex
from pathlib import Path

import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]


def headline_blocks():
    text = (ROOT / "README.md").read_text()
    section = text.split("## NVLink vs PCIe in three commands", 1)[1].split("\n## ", 1)[0]
    commands, output = re.findall(r"```(?:bash)?\n(.*?)```", section, flags=re.S)
    return [shlex.split(line) for line in commands.strip().splitlines()], output.strip()


@pytest.mark.slow
def test_readme_comparison_prints_what_readme_shows(tmp_path, monkeypatch, capsys):
    commands, expected = headline_blocks()
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        assert argv[0].endswith("moesim")
        capsys.readouterr()  # keep only the last command's output
        args = [str(ROOT / a) if a.startswith("scenarios/") else a for a in argv[1:]]
        assert main(args) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("wrote ")]
    assert "\n".join(table) == expected
