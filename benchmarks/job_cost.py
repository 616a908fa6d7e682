"""Wall time and peak memory of a whole job, such as the README's two commands.

    python benchmarks/job_cost.py -- make run
    python benchmarks/job_cost.py -- make test

Runs the command (its output passes through), then prints its wall time, the peak resident memory
of the largest process it started (``ru_maxrss`` over the waited-for children: Python, pytest,
the training process) and the processor. Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

from thyronet.training.provenance import processor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    start = time.perf_counter()
    code = subprocess.call(command)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
    print(f"{' '.join(command)}: exit {code}, wall {wall / 60:.1f} min, peak memory of its largest process "
          f"{peak_mib:,.0f} MiB; processor: {processor()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
