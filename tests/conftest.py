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


CACHE_ENV = "STABLETRAIN_CLAIMS_CACHE"  # claims_support.CACHE_ENV (not imported here: it imports torch)


def pytest_configure(config):
    """One folder for the claims tests' results, shared by the xdist workers (claims_support.compute).

    The controller makes it before the workers start, and they inherit it through the environment;
    a folder the developer set (to keep results between sessions) is used as it is and kept.
    """
    if hasattr(config, "workerinput") or os.environ.get(CACHE_ENV):
        return
    import tempfile

    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="stabletrain-claims-")
    config._stabletrain_claims_cache = os.environ[CACHE_ENV]


def pytest_unconfigure(config):
    folder = getattr(config, "_stabletrain_claims_cache", None)
    if folder:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
