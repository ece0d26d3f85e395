"""Python asyncore's file server for bench/sendfile_bench.ts: an async_chat
per connection with a producer reading the file 64 KiB at a time, then
close_when_done() (asyncore has no sendfile: socket.sendfile is blocking).

    python3 -W ignore bench/servers/asyncore_file_server.py [host] [port] --file=PATH

Prints "LISTENING <port>" once listening.
"""
import asynchat
import asyncore
import socket
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
path = next(a[7:] for a in sys.argv[1:] if a.startswith("--file="))


class FileProducer:
    def __init__(self, f):
        self.f = f

    def more(self):
        data = self.f.read(65536)
        if not data:
            self.f.close()
        return data


class Handler(asynchat.async_chat):
    def __init__(self, sock):
        super().__init__(sock)
        self.push_with_producer(FileProducer(open(path, "rb")))
        self.close_when_done()

    def collect_incoming_data(self, data):
        pass


class Server(asyncore.dispatcher):
    def __init__(self, host, port):
        super().__init__()
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        Handler(sock)


server = Server(args[0] if args else "127.0.0.1", int(args[1]) if len(args) > 1 else 0)
print(f"LISTENING {server.socket.getsockname()[1]}", flush=True)
asyncore.loop(timeout=1, use_poll=True)
