"""``thyronet --help`` and every subcommand's help answer without importing the numerical stack."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "numpy", "cv2", "PIL", "lightning")
COMMANDS = ([], ["train"], ["cv"], ["predict"], ["serve"], ["segment"], ["export"], ["evaluate"], ["models"],
            ["explain"], ["data", "summary"], ["federated", "simulate"])


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "thyronet")
def test_help_imports_no_numerical_library(command):
    probe = ("import sys\nfrom thyronet.apps.cli import main\n"
             f"try:\n    main({command + ['--help']!r})\nexcept SystemExit:\n    pass\n"
             f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "usage: thyronet" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
