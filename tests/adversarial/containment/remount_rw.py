"""Remount the read-only view read-write via ctypes, then write into the virtual environment."""
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
MS_REMOUNT, MS_BIND = 32, 4096
results = []
for point in (ARGS["venv"], "/", "/usr"):
    rc = libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND, None)
    results.append(rc)
try:
    with open(os.path.join(ARGS["venv"], "pwned.txt"), "w") as f:
        f.write("x")
    print("ESCAPED wrote into the virtual environment")
except OSError as exc:
    print(f"CONTAINED remount={results} write={exc.errno}")
