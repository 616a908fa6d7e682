"""Wall time of ``thyronet --help`` and of each subcommand's help, in fresh processes.

    python benchmarks/cli_startup.py [--repeats 5]

Prints the median and the slowest of the repeats per command, against the 1 s aim, and the
processor. Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from thyronet.training.provenance import processor

COMMANDS = ([], ["train"], ["cv"], ["predict"], ["serve"], ["segment"], ["export"], ["models"], ["data", "summary"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    executable = shutil.which("thyronet") or sys.exit("thyronet is not on PATH (install the package first)")
    print(f"processor: {processor()}\n\n| command | median s | slowest s |\n| --- | ---: | ---: |")
    for command in COMMANDS:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([executable, *command, "--help"], capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        print(f"| thyronet {' '.join(command + ['--help'])} | {statistics.median(times):.2f} | {max(times):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
