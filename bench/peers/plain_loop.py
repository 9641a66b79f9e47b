"""The floor: the plainest single-threaded accept/recv/send/close loop.

No timeouts, no limits, no safety: it shows what Python itself costs per
connection on this machine.  Usage: plain_loop.py PORT STATUS_FILE
"""

import socket
import sys

from fingerd.users.statusfile import parse_status_file


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "rb") as handle:
        parsed = parse_status_file(handle.read())
    replies = {name.encode(): ("\r\n".join(status) + "\r\n").encode() for name, status in parsed.users.items()}
    missing = b"No such user\r\n"
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1024)
    while True:
        conn, _ = server.accept()
        try:
            line = conn.recv(1100).split(b"\n", 1)[0].rstrip(b"\r")
            conn.sendall(replies.get(line, missing))
        except OSError:
            pass
        conn.close()


if __name__ == "__main__":
    main()
