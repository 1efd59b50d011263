"""Write 2 GB into scratch, in files under the per-file cap."""
import os

chunk = b"x" * (16 * 1024**2)
written = 0
try:
    for i in range(128):
        with open(f"fill-{i}.bin", "wb") as f:
            for _ in range(2):
                f.write(chunk)
                written += len(chunk)
except OSError:
    pass
for name in os.listdir("."):
    if name.startswith("fill-"):
        os.remove(name)
print(f"ESCAPED wrote {written >> 20} MB" if written >= ARGS["cap"] + len(chunk) else f"CONTAINED at {written >> 20} MB")
