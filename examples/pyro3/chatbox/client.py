#!/usr/bin/env python3
"""Pyro3's chatbox-ES client, ported mechanically to Python 3, eventservice and Pyro5.

One thread prints what arrives on the channel (the Subscriber's listen()),
another reads your lines and publishes them; it loops on Pyro3's
``abortListen`` flag. /quit or end of input leaves; Ctrl-C ends listen() with
KeyboardInterrupt, as in Pyro3.

    python examples/pyro3/chatbox/client.py      # needs the chat box server (server.py)
"""
from threading import Thread

from Pyro5 import api as pyro
from server import CHAT_SERVER_NAME

from eventservice import Publisher, Subscriber


# Chat client.
# Uses main thread for printing incoming event server messages
# (the chat messages!)
# and another to read user input and publish this on the chat channel.
class Chatter(Publisher, Subscriber):
    def __init__(self):
        Publisher.__init__(self)
        Subscriber.__init__(self)
        self.chatbox = pyro.Proxy("PYRONAME:" + CHAT_SERVER_NAME)

    def event(self, event):
        (nick, line) = event.msg
        if nick != self.nick:
            print("[" + nick + "] " + line, flush=True)

    def chooseChannel(self):
        nicks = self.chatbox.getNicks()
        if nicks:
            print("The following people are on the server: ", ", ".join(nicks))
        channels = self.chatbox.getChannels()
        channels.sort()
        if channels:
            print("The following channels already exist: ", ", ".join(channels))
            print()
            self.channel = input("Choose a channel or create a new one: ")
        else:
            print("The server has no active channels.")
            self.channel = input("Name for new channel: ")
        self.nick = input("Choose a nickname: ")
        (self.eventTopic, people) = self.chatbox.join(self.channel, self.nick)
        self.subscribe(self.eventTopic)
        print("Joined channel", self.channel, "as", self.nick)
        print("People on this channel:", ", ".join(people), flush=True)
        self.inputThread = Thread(target=self.handleInput)
        self.inputThread.start()
        try:
            self.listen()
        except KeyboardInterrupt:
            print("Shutting down... (press enter)", flush=True)
            self.abort()
            self.inputThread.join()

    def handleInput(self):
        print("Ready for input! Type /quit to quit", flush=True)
        try:
            try:
                while not self.abortListen:
                    line = input("> ")
                    if line == "/quit":
                        break
                    if line:
                        self.publish(self.eventTopic, (self.nick, line))
            except EOFError:
                pass
        finally:
            # need to get new chatbox proxy because we're in a different thread
            chatbox = pyro.Proxy("PYRONAME:" + CHAT_SERVER_NAME)
            chatbox.leave(self.channel, self.nick)
            self.abort()
            print("Bye!", flush=True)


def main():
    chatter = Chatter()
    chatter.chooseChannel()


if __name__ == "__main__":
    main()
