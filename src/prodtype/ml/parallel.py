"""Out-of-fold fits side by side on a machine's cores, with the same results as one after the other.

The fits spend their time where the GIL is released (liblinear's solver runs ``nogil``; the logistic heads'
loss and gradient are single-threaded BLAS calls), so threads use the cores without copying the feature
matrices into other processes. But liblinear draws its coordinate order from one random generator for the
whole process (scikit-learn's ``set_seed`` reseeds it at the start of every fit): two SVM fits at once would
interleave their draws and make the models depend on timing. So the fits run in *lanes*: each lane one after
the other in its own thread (all SVM fits in one lane), the lanes side by side. Every task writes only its own
rows of the out-of-fold arrays, so the order in which lanes finish does not matter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_limits
from tqdm import tqdm

Task = Callable[[], None]


def lane_workers(threads: int | None) -> int:
    """How many lanes may run at once: the cores we may use (``threads``, else all)."""
    return max(1, threads or len(os.sched_getaffinity(0)))


def run_lanes(lanes: Sequence[Sequence[Task]], workers: int, progress: bool, desc: str) -> None:
    """Run every task; tasks of one lane in order, up to ``workers`` lanes at once, with a progress bar.

    The first exception of any task is raised here once the running lanes stop; a failed lane skips its
    remaining tasks, and Ctrl-C stops every lane after its current task.
    """
    bar = tqdm(total=sum(len(lane) for lane in lanes), desc=desc, unit="fit", disable=not progress)
    stop = False

    def run(lane: Sequence[Task]) -> None:
        for task in lane:
            if stop:
                return
            task()
            bar.update()

    # BLAS stays at one thread for the whole section (fit_logistic also asks for it): threadpoolctl's
    # limits are per process, so per-fit limits entered and left by two threads would restore each other's
    # settings in the wrong order.
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            if workers <= 1 or len(lanes) <= 1:
                for lane in lanes:
                    run(lane)
                return
            with ThreadPoolExecutor(min(workers, len(lanes)), thread_name_prefix="fit-lane") as pool:
                futures = [pool.submit(run, lane) for lane in lanes]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    stop = True
                    raise
    finally:
        bar.close()
