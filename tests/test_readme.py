"""The README's two commands are what CI and users run."""

import re
from pathlib import Path

README = Path("README.md").read_text()


def test_ci_runs_the_readme_test_command_verbatim():
    ci = Path(".ci/run").read_text()
    test_command = re.search(r"^    (python3 -m venv .* pytest -q)$", README, re.M).group(1)
    assert test_command in ci.splitlines()


def test_readme_main_command_runs_snakemake_on_the_default():
    assert re.search(r"^    python3 -m venv .* && snakemake --cores all$", README, re.M)
