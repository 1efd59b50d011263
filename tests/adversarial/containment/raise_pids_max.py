"""Raise its own pids.max (or move itself to the root cgroup) through the cgroup file system."""
import glob
import os

done = []
for path in glob.glob("/sys/fs/cgroup/**/pids.max", recursive=True) + ["/sys/fs/cgroup/pids/pids.max"]:
    try:
        with open(path, "w") as f:
            f.write("max")
        done.append(path)
    except OSError:
        pass
for procs in ("/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/pids/cgroup.procs", "/sys/fs/cgroup/memory/cgroup.procs"):
    try:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
        done.append(procs)
    except OSError:
        pass
print("ESCAPED " + ", ".join(done) if done else f"CONTAINED /sys present: {os.path.exists('/sys/fs/cgroup')}")
