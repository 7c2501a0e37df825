"""Pyro3's distributed-computing/tasks/task.py, ported mechanically to Python 3 and eventservice.

The task base classes. A TaskPartition is a Publisher: it reports its
progress on the Event Service channel Distributed.cell.<name>, which
monitor.py shows. (Pyro3 shipped partitions to cell processors with its
mobile code; Pyro5 has none, so run_partition.py runs one here.)
"""
import eventservice

#
# The 'main' Task abstract baseclass.
#


class PartitionableTask:
    def __init__(self, name):
        self.name = name

    def split(self, numPiecesHint):
        pass  # implement in subclass

    def join(self, task):
        pass  # implement in subclass, return True to stop the whole task.

    def getResult(self):
        pass  # implement in subclass

    def __str__(self):
        return "<Task '%s'>" % self.name  # noqa: UP031


#
# The subtask baseclass. The main task is split into these
# subtasks, which are distributed over the processors.
# The progress of each subtask can be monitored on the ES
# channels Distributed.cell.*  (*=subtask name)
# (use the monitor.py for this)
#
class TaskPartition(eventservice.Publisher):
    def __init__(self, name):
        eventservice.Publisher.__init__(self)
        self.name = name

    def run(self):
        self.publish("Distributed.cell." + self.name, "START")
        for pos in self.work():
            self.publish("Distributed.cell." + self.name, self.progress(pos))
        self.publish("Distributed.cell." + self.name, "FINISHED")

    def progress(self, pos):
        return 100.0 * pos / 100.0  # override in subclass

    def work(self):
        yield 100  # override this generator in subclass, here the actual work is done

    def __str__(self):
        return "<TaskPartition '%s'>" % self.name  # noqa: UP031
