"""Write outside scratch through /proc/<grader pid>/root (and /proc/1/root)."""
import os

hits = []
for pid in (ARGS["grader_pid"], 1, os.getppid()):
    path = f"/proc/{pid}/root{ARGS['target']}"
    try:
        with open(path, "w") as f:
            f.write("pwned")
        hits.append(path)
    except OSError:
        pass
print("ESCAPED wrote " + ", ".join(hits) if hits else "CONTAINED")
