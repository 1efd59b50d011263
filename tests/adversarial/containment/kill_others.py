"""Kill a classmate's kernel and a grader worker, SIGSTOP the grader: by host pid and by kill(-1)."""
import os
import signal

hit = []
for pid in ARGS["pids"]:
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        try:
            os.kill(pid, sig)
            hit.append(pid)
        except OSError:
            pass
print("ESCAPED signalled " + ", ".join(map(str, hit)) if hit else "CONTAINED", flush=True)
