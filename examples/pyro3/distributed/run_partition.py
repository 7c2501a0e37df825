#!/usr/bin/env python3
"""Runs one task partition in this process, as a cell processor would, so monitor.py shows its progress.

    python examples/pyro3/distributed/run_partition.py [--name sort-1] [--steps 4]
"""
import argparse

from task import TaskPartition


class CountingPartition(TaskPartition):
    """Counts to ``steps``, reporting progress as a fraction after each step."""

    def __init__(self, name, steps):
        TaskPartition.__init__(self, name)
        self.steps = steps

    def work(self):
        yield from range(1, self.steps)

    def progress(self, pos):
        return pos / self.steps


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run one task partition and publish its progress.")
    parser.add_argument("--name", default="count-1", help="the partition's name (default count-1)")
    parser.add_argument("--steps", type=int, default=4, help="steps of work (default 4)")
    options = parser.parse_args(argv)
    partition = CountingPartition(options.name, options.steps)
    print("running", partition, flush=True)
    partition.run()
    partition.close()
    print("finished", partition, flush=True)


if __name__ == "__main__":
    main()
