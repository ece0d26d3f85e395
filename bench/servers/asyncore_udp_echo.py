"""Python 3 asyncore UDP echo server for the UDP bench: a SOCK_DGRAM dispatcher
whose handle_read answers one datagram with recvfrom and sendto, as asyncore
programs do (asyncore has no batch calls).

    python3 -W ignore bench/servers/asyncore_udp_echo.py [host] [port] [--poller=select|poll]

Prints "LISTENING <port>" once bound.
"""
import asyncore
import socket
import sys


class UdpEcho(asyncore.dispatcher):
    def __init__(self, host, port):
        super().__init__()
        self.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.bind((host, port))

    def writable(self):
        return False

    def handle_read(self):
        data, addr = self.socket.recvfrom(2048)
        self.socket.sendto(data, addr)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    poller = "poll"
    for a in sys.argv[1:]:
        if a.startswith("--poller="):
            poller = a.split("=", 1)[1]
    server = UdpEcho(args[0] if args else "127.0.0.1", int(args[1]) if len(args) > 1 else 0)
    print("LISTENING", server.socket.getsockname()[1], flush=True)
    asyncore.loop(timeout=30, use_poll=(poller == "poll"))


if __name__ == "__main__":
    main()
