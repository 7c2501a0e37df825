#!/usr/bin/env python3
"""Pyro3's distributed-computing/cell/monitor.py, ported mechanically to Python 3 and eventservice.

Shows a table of running tasks and the progress of each, from the events the
task partitions publish on Distributed.cell.<task>.

    python examples/pyro3/distributed/monitor.py [--events N] [--no-clear]

Added by the port, to end by itself in a scripted run: --events N (abort()
after N events) and --no-clear (do not clear the screen between tables).
"""
import argparse
import os

from eventservice import Subscriber

#
# The monitor application that shows a table of running
# tasks and the progress of each task.
#


class CellSubscriber(Subscriber):
    def __init__(self, events=None, clear=True):
        Subscriber.__init__(self)
        self.subscribeMatch(r"^Distributed\.cell\..*$")
        self.tasks = {}
        self.counter = 0
        self.events = events
        self.clear = clear

    def event(self, event):
        task = event.subject.split("Distributed.cell.")[1]
        if event.msg == "START":
            self.tasks[task] = 0.0
        elif event.msg == "FINISHED":
            self.tasks[task] = 1.0
        else:
            self.tasks[task] = event.msg
        self.counter += 1
        self.screen()
        if self.events is not None and self.counter >= self.events:
            self.abort()

    def screen(self):
        if self.clear:
            if os.name == "nt" or "win" in os.name:
                os.system("cls")
            else:
                os.system("clear")
        print("------Distributed Computing Monitor is listening (%d)-------" % self.counter)  # noqa: UP031
        print("TASK                 PROGRESS")
        for task, progress in self.tasks.items():
            progressstr = "[done]" if progress >= 1.0 else "[" + ("*" * int(progress * 30.0 + 0.5)).ljust(30) + "]"
            print(task.ljust(20), progressstr, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Show the progress the task partitions publish.")
    parser.add_argument("--events", type=int, help="stop after this many events (default: never)")
    parser.add_argument("--no-clear", dest="clear", action="store_false", help="do not clear the screen")
    options = parser.parse_args(argv)
    sub = CellSubscriber(options.events, options.clear)
    sub.screen()
    sub.listen()


if __name__ == "__main__":
    main()
