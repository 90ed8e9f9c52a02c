"""handnn versus torch, side by side in one process: ``python -m benchmarks``.

Both libraries run single-threaded: the BLAS/OpenMP thread counts are pinned to 1 here, before NumPy or torch is
imported (and again with threadpoolctl when it is installed), and ``torch.set_num_threads(1)``.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
