"""Leave files in /dev/shm (and /tmp), and fill /dev/shm."""
import os

for folder in ("/dev/shm", "/tmp"):
    with open(os.path.join(folder, ARGS["marker"]), "w") as f:
        f.write("left behind")
written = 0
try:
    with open("/dev/shm/fill", "wb") as f:
        for _ in range(64):
            f.write(b"x" * 1024**2)
            written += 1024**2
except OSError:
    pass
os.remove("/dev/shm/fill") if os.path.exists("/dev/shm/fill") else None
print(f"ESCAPED filled /dev/shm with {written >> 20} MB" if written > ARGS["cap"] else f"CONTAINED at {written >> 20} MB")
