#!/usr/bin/env python3
"""Pyro3's chatbox-ES server, ported mechanically to Python 3, eventservice and Pyro5.

The chat box server hands out logins, nicknames and channels; the chatting
itself goes through the Event Service (one subject per channel), so people
can go on chatting even when this server stops.

    python examples/pyro3/chatbox/server.py      # needs a name server and the Event Service

What the port changed: print(), ``Pyro.EventService.Clients`` -> ``eventservice``,
``Pyro.core.ObjBase`` -> ``@expose``, Pyro3's daemon/NS calls -> Pyro5's, and the
name without Pyro3's group (Pyro5's name server has no groups).
"""
from Pyro5 import api as pyro
from Pyro5.errors import NamingError

from eventservice import Publisher

CHAT_SERVER_NAME = "ChatBox-ES.Server"  # Pyro3: ":ChatBox-ES" + ".Server"


# Chat box administration server.
# Handles logins, logouts, channels and nicknames.
# The actual chat is fully performed by the Event Server!
@pyro.expose
class ChatBox(Publisher):
    def __init__(self):
        Publisher.__init__(self)
        self.channels = {}  # registered channels { eventTopic->nick list }
        self.nicks = []  # all registered nicks on this server

    def getChannels(self):
        return list(self.channels.keys())

    def getNicks(self):
        return self.nicks

    def join(self, channel, nick):
        if nick in self.nicks:
            raise ValueError("this nick is already in use")
        if channel not in self.channels:
            print("CREATING NEW CHANNEL", channel)
            self.channels[channel] = ("ChatBox.Channel." + channel, [])
        self.channels[channel][1].append(nick)
        self.nicks.append(nick)
        print(nick, "JOINED", channel)
        self.publish(self.channels[channel][0], ("SERVER", "** " + nick + " joined **"))
        return self.channels[channel]  # return the eventTopic for this channel

    def leave(self, channel, nick):
        if channel not in self.channels:
            print("IGNORED UNKNOWN CHANNEL", channel)
            return
        self.channels[channel][1].remove(nick)
        self.publish(self.channels[channel][0], ("SERVER", "** " + nick + " left **"))
        if len(self.channels[channel][1]) < 1:
            del self.channels[channel]
            print("REMOVED CHANNEL", channel)
        self.nicks.remove(nick)
        print(nick, "LEFT", channel)


def main():
    daemon = pyro.Daemon()
    ns = pyro.locate_ns()

    # make sure our object name isn't registered already
    try:
        ns.remove(CHAT_SERVER_NAME)
    except NamingError:
        pass

    uri = daemon.register(ChatBox())
    ns.register(CHAT_SERVER_NAME, uri)

    # enter the service loop.
    print("Chatbox open.", flush=True)
    daemon.requestLoop()


if __name__ == "__main__":
    main()
