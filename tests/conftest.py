import os
import sys
from pathlib import Path

# Two pytest-xdist workers on two cores: one BLAS/OpenMP thread each, or they fight over the cores
# (single tests were seen to take 30x longer). Set before anything imports torch or numpy.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))  # the alternatives/ package of correct implementations
