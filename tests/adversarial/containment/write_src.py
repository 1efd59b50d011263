"""Rewrite the checkout: stabletrain's sources, the solutions, the tests, the submissions."""
import os

written = []
for path in ARGS["paths"]:
    try:
        with open(path, "a") as f:
            f.write("\n# pwned\n")
        written.append(path)
    except OSError:
        pass
print("ESCAPED wrote " + ", ".join(written) if written else "CONTAINED")
