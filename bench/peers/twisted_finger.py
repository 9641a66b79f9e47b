"""The Twisted tutorial's finger server, as the benchmark's peer.

Written in the tutorial's style (a LineReceiver answering from a dict of
statuses, with a Deferred per lookup) and fed from the same status file as
fingerd, parsed once at start.  Usage: twisted_finger.py PORT STATUS_FILE
"""

import sys

from twisted.internet import defer, protocol, reactor
from twisted.protocols import basic

from fingerd.users.statusfile import parse_status_file


class FingerProtocol(basic.LineReceiver):
    def lineReceived(self, user):
        d = self.factory.getUser(user)

        def onError(err):
            return b"Internal error in server"

        d.addErrback(onError)

        def writeResponse(message):
            self.transport.write(message + b"\r\n")
            self.transport.loseConnection()

        d.addCallback(writeResponse)


class FingerFactory(protocol.ServerFactory):
    protocol = FingerProtocol

    def __init__(self, users):
        self.users = users

    def getUser(self, user):
        return defer.succeed(self.users.get(user, b"No such user"))


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "rb") as handle:
        parsed = parse_status_file(handle.read())
    users = {name.encode(): "\r\n".join(status).encode() for name, status in parsed.users.items()}
    reactor.listenTCP(port, FingerFactory(users), interface="127.0.0.1", backlog=1024)
    reactor.run()


if __name__ == "__main__":
    main()
