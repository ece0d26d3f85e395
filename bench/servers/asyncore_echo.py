"""Python 3 asyncore echo server for the bench, the same shape as ours.

    python3 -W ignore bench/servers/asyncore_echo.py [host] [port] [--poller=select|poll]

Prints "LISTENING <port>" once listening. recv(65536), TCP_NODELAY, listen(1024).
"""
import asyncore
import socket
import sys

BUF = 65536


class EchoHandler(asyncore.dispatcher_with_send):
    def handle_read(self):
        data = self.recv(BUF)
        if data:
            self.send(data)


class EchoServer(asyncore.dispatcher):
    def __init__(self, host, port):
        super().__init__()
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        EchoHandler(sock)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    poller = "select"
    for a in sys.argv[1:]:
        if a.startswith("--poller="):
            poller = a.split("=", 1)[1]
    host = args[0] if args else "127.0.0.1"
    port = int(args[1]) if len(args) > 1 else 0
    server = EchoServer(host, port)
    print("LISTENING", server.socket.getsockname()[1], flush=True)
    asyncore.loop(timeout=30, use_poll=(poller == "poll"))


if __name__ == "__main__":
    main()
