"""Open a TCP connection to a port the grader's machine listens on at 127.0.0.1."""
import socket

try:
    socket.create_connection(("127.0.0.1", ARGS["port"]), timeout=2).sendall(b"pwned")
    print("ESCAPED connected to 127.0.0.1")
except OSError as exc:
    print(f"CONTAINED {exc}")
