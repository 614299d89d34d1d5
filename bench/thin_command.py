"""The thinnest command of the user's path: `python thin_command.py URL FOLDER` sends each
file of FOLDER as its own request to `thin_service.py` over one connection (the kernel
copies each file to the socket: `sendfile`), then waits for every image to be done, and
exits. It imports only what that takes (`os`, `socket`, `sys`), so its start is a bare
interpreter's: the least any command of this design pays before its first image. Not a
benchmark itself: `bench/pipeline.py` times it as it times `imgburst submit --wait`.
"""

import os
import socket
import sys


def answer(replies) -> int:  # noqa: ANN001 (a socket file: typing would cost an import)
    """The status of one answer, its headers and (empty) body read."""
    status = int(replies.readline().split()[1])
    while replies.readline() not in (b"\r\n", b""):
        pass
    return status


def main() -> int:
    host_port, folder = sys.argv[1].split("//", 1)[1], sys.argv[2]
    host, port = host_port.rsplit(":", 1)
    names = sorted(os.listdir(folder))
    with socket.create_connection((host, int(port))) as sock, sock.makefile("rb") as replies:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for name in names:
            with open(os.path.join(folder, name), "rb") as image:
                size = os.fstat(image.fileno()).st_size
                sock.sendall(f"PUT /images/{name} HTTP/1.1\r\nHost: {host_port}\r\n"
                             f"Content-Length: {size}\r\n\r\n".encode())
                sock.sendfile(image)
            if answer(replies) != 201:
                return 1
        sock.sendall(f"GET /done?images={len(names)} HTTP/1.1\r\nHost: {host_port}\r\n\r\n"
                     .encode())
        return 0 if answer(replies) == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
