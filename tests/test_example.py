"""The shipped example trains to its stated accuracy in the small setting."""

from __future__ import annotations

import re
import subprocess
import sys

from fastembed.examples import text_classifier


def test_runs_as_a_module_and_reaches_90_percent():
    result = subprocess.run(
        [sys.executable, "-m", "fastembed.examples.text_classifier", "--small"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", result.stdout).group(1))
    assert accuracy >= 0.9
    assert "epoch 2/2 [##############################]" in result.stderr


def test_is_reproducible_and_quiet(capsys):
    first = text_classifier.main(["--small", "--quiet", "--seed", "3"])
    second = text_classifier.main(["--small", "--quiet", "--seed", "3"])
    assert first == second >= 0.9
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.count("test accuracy") == 2
