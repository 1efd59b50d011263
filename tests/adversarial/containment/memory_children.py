"""Children that together hold more memory than the submission's cap (each under it alone)."""
import subprocess
import sys

code = f"import time; b = b'x' * {ARGS['each']}; print('held', flush=True); time.sleep(3)"
children = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
            for _ in range(ARGS["children"])]
held = sum(c.communicate()[0].strip() == "held" and c.returncode == 0 for c in children)
print(f"ESCAPED all {held} children held their memory" if held == ARGS["children"] else f"CONTAINED {held} held")
