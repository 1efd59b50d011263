"""Leave a daemon behind (double fork, new session) that should outlive the kernel."""
import os
import subprocess
import sys

subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(120)  # {ARGS['marker']}"],
                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", f"import time; time.sleep(120)  # {ARGS['marker']}"])
    os._exit(0)
print("CONTAINED? started two daemons; the test looks for them after the kernel is gone")
