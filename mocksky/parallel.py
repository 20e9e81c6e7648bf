"""Execution of a run's chunks: in process, on a local Dask cluster, or on any Dask scheduler.

:func:`run_tasks` calls ``fn(payload, key, *args)`` once per key and hands every result to a callback in the driver
as soon as it is available (the pipeline records finished parts there, so that a killed run can resume):

* ``workers=None`` or ``0`` and no scheduler: in this process (no cluster). The tasks run ``cores // threads`` at a
  time in a thread pool, ``threads`` Numba threads each (default 1: one task per core). They share the payload, so
  the memory is one payload plus one task's working set per core. The Numba kernels release the GIL
  (``nogil=True``), and so do NumPy's array operations; one task per core did 1.2x the work of one task using both
  cores' Numba threads (a 2-core machine, 14 star-count chunks: 49.7 s against 59.8 s), whose single-threaded NumPy
  stretches leave a core idle. BLAS is limited to one thread meanwhile (:func:`single_threaded_blas`: OpenBLAS's idle
  threads busy-waited on the cores the other tasks run on). With one core, one task or Numba's ``workqueue``
  threading layer (which is not thread-safe) the tasks run one after another;
* ``workers=N``: a :class:`dask.distributed.LocalCluster` of N worker processes with one task thread each;
* ``scheduler=ADDRESS``: :class:`dask.distributed.Client` connected to an existing scheduler (e.g.
  ``tcp://host:8786`` of ``dask scheduler`` / ``dask worker`` processes on a real cluster).

The payload (the run plan, tens to hundreds of MB) is shipped to the workers once
(:meth:`~dask.distributed.Client.scatter` with ``broadcast=True``), not with every task. ``threads`` sets the
number of Numba threads used by each task (default on a cluster: the CPU cores divided by the number of local
workers); every kernel's per-element results do not depend on it, nor on how many tasks run at once. Progress is
shown with tqdm on stderr when it is a terminal (``progress=None``), always (True) or never (False).

The function and its results must be picklable; ``fn`` must be importable by the workers (a module-level function of
an installed or ``PYTHONPATH`` package). In process, ``fn`` must not modify the shared payload.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Iterable, Optional, Sequence

import numba
import numpy as np

__all__ = ["run_tasks", "default_threads", "release_memory", "single_threaded_blas"]

log = logging.getLogger(__name__)


def default_threads(workers: Optional[int]) -> int:
    """Numba threads per task: the CPU cores (``os.sched_getaffinity`` when available) divided by the local workers."""
    try:
        ncpu = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        ncpu = os.cpu_count() or 1
    return max(1, ncpu // max(int(workers or 1), 1))


def _set_threads(threads: Optional[int]) -> None:
    if threads is None:
        return
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


@numba.njit(parallel=True, cache=True, nogil=True)
def _touch(a):
    for i in numba.prange(a.shape[0]):
        a[i] += 1.0


def _threads_safe() -> bool:
    """Whether Numba's threading layer lets several Python threads launch parallel kernels at once (every layer but
    ``workqueue``). The layer is chosen at the first parallel launch, which a one-element kernel forces here."""
    try:
        _touch(np.zeros(1))
        return numba.threading_layer() != "workqueue"
    except (ValueError, RuntimeError):
        return False


def _tasks_at_once(threads: Optional[int], n_keys: int) -> int:
    per = 1 if threads is None else max(1, int(threads))
    n = min(default_threads(None) // per, n_keys)
    return n if n > 1 and _threads_safe() else 1


def _libc_malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _libc_malloc_trim() if sys.platform.startswith("linux") else None


def release_memory() -> None:
    """Hand the free pages of the C heap back to the system (glibc ``malloc_trim(0)``; nothing elsewhere).

    A task's large temporaries are freed into the allocator's per-thread arenas, which keep them: after chunks ran
    in two threads the process held ~0.35 GB more than its live data, and the comparison stage allocated on top of
    that (1e7-row star counts: 1.78 GB peak RSS). Called after every task and at the end of :func:`run_tasks`.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _call(fn: Callable, payload: Any, key: Any, threads: Optional[int], args: tuple):
    _set_threads(threads)
    try:
        return fn(payload, key, *args)
    finally:
        release_memory()


def _progress_bar(total: int, progress: Optional[bool], desc: str, initial: int = 0):
    enabled = sys.stderr.isatty() if progress is None else bool(progress)
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="chunk", file=sys.stderr, dynamic_ncols=True)


def run_tasks(fn: Callable, payload: Any, keys: Sequence, args: tuple = (), *, workers: Optional[int] = None,
              scheduler: Optional[str] = None, threads: Optional[int] = None, progress: Optional[bool] = None,
              on_result: Optional[Callable[[Any, Any], None]] = None, desc: str = "chunks", total: Optional[int] = None,
              postfix: Optional[Callable[[Any], dict]] = None) -> dict:
    """Run ``fn(payload, key, *args)`` for every key.

    Parameters
    ----------
    fn : callable
        Module-level function (picklable).
    payload : object
        Shared input (scattered once to every worker).
    keys : sequence
        Task keys (e.g. chunk indices); tasks are submitted in this order.
    args : tuple
        Extra arguments of every call.
    workers : int, optional
        Local worker processes; None or 0 runs in this process.
    scheduler : str, optional
        Address of a running Dask scheduler (``workers`` is then ignored).
    threads : int, optional
        Numba threads per task (default :func:`default_threads` on a local cluster; 1 in process, where
        ``cores // threads`` tasks run at once).
    progress : bool, optional
        Progress bar on stderr (default: when stderr is a terminal).
    on_result : callable, optional
        ``on_result(key, result)``, called in the driver as each task finishes (in completion order).
    desc : str
        Progress-bar label.
    total : int, optional
        Total for the progress bar (default ``len(keys)``; larger when some tasks were done before).
    postfix : callable, optional
        ``postfix(result) -> dict`` shown after the bar (e.g. running star counts).

    Returns
    -------
    dict
        ``{key: result}``.

    Raises
    ------
    ValueError
        Negative ``workers``.
    Exception
        The first task error is re-raised (remaining tasks are cancelled).
    """
    keys = list(keys)
    if workers is not None and (isinstance(workers, bool) or int(workers) < 0):
        raise ValueError(f"workers must be an integer >= 0 or None, got {workers!r}")
    total = len(keys) if total is None else int(total)
    bar = _progress_bar(total, progress, desc, initial=total - len(keys))
    results = {}

    def _done(key, res):
        results[key] = res
        if on_result is not None:
            on_result(key, res)
        if bar is not None:
            bar.update(1)
            if postfix is not None:
                bar.set_postfix(postfix(res), refresh=False)

    t0 = time.perf_counter()
    try:
        if scheduler is None and not workers:
            at_once = _tasks_at_once(threads, len(keys))
            with single_threaded_blas():
                if at_once == 1:
                    for key in keys:
                        _done(key, _call(fn, payload, key, threads, args))
                else:
                    _run_threads(fn, payload, keys, args, at_once, 1 if threads is None else threads, _done)
        elif keys:
            _run_dask(fn, payload, keys, args, workers, scheduler, threads, _done)
    finally:
        if bar is not None:
            bar.close()
        release_memory()
    log.info("%d task(s) in %.1f s (%s)", len(keys), time.perf_counter() - t0,
             f"scheduler {scheduler}" if scheduler else (f"{workers} local worker(s)" if workers else "in process"))
    return results


def single_threaded_blas():
    """Context manager limiting the BLAS libraries loaded in this process to one thread (threadpoolctl).

    The tasks call BLAS only for small products (a dot product of a batch's weights, (N, 3) x (3, 3) rotations), but
    each call wakes OpenBLAS's thread pool, whose threads then busy-wait on the other cores: ~1.1 s of CPU per
    4.4 s star-count chunk on one thread, taken from the task running on the other core. Two chunks run at once
    went from 1.3-1.6x to 1.75-2.0x the throughput of one (2-core machine, old-disc chunks of the star-count
    recipe). Dask's worker processes get the same limit from their environment (``OPENBLAS_NUM_THREADS=1``,
    Dask's ``distributed.nanny.pre-spawn-environ``), so in-process and Dask runs now use the same BLAS settings.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


_SKIPPED = object()


def _call_unless_stopped(stop, fn, payload, key, threads, args):
    """``_call`` unless an earlier task has failed (then ``_SKIPPED``); a failure stops the tasks not yet started in
    every thread at once, not only once the driver has read it."""
    if stop.is_set():
        return _SKIPPED
    try:
        return _call(fn, payload, key, threads, args)
    except BaseException:
        stop.set()
        raise


def _run_threads(fn, payload, keys, args, at_once, threads, done) -> None:
    """The tasks on a pool of ``at_once`` threads (queued in key order, results handed to ``done`` in this thread as
    they finish); the first error stops the tasks not yet started and is re-raised once the running ones have
    stopped."""
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="mocksky-task") as pool:
        futures = {pool.submit(_call_unless_stopped, stop, fn, payload, key, threads, args): key for key in keys}
        try:
            for fut in as_completed(futures):
                res = fut.result()
                if res is not _SKIPPED:
                    done(futures[fut], res)
        except BaseException:
            stop.set()
            for fut in futures:
                fut.cancel()
            raise


def _worker_environ() -> dict:
    """Dask's environment for spawning local workers, without ``MALLOC_TRIM_THRESHOLD_``.

    Dask sets it (65536) so that idle workers hand freed memory back to the system. An explicit threshold also fixes
    glibc's mmap threshold at 128 kB, so every array of more than 16k doubles is mapped and its pages faulted in
    afresh, and a chunk's many temporaries of 1e5-1e6 elements made a chunk ~25 % slower (4.0 s -> 5.2 s, one
    thread, a 2.5e5-row disc chunk). A run's memory is bounded by its chunk size, so the trimming buys nothing here.
    """
    import dask
    import distributed  # noqa: F401  (registers the distributed.* configuration)

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def _run_dask(fn, payload, keys, args, workers, scheduler, threads, done) -> None:
    import dask
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is not None:
        client = Client(scheduler)
    else:
        if threads is None:
            threads = default_threads(workers)
        # one task thread per worker process: the tasks themselves run Numba-parallel kernels
        with dask.config.set({"distributed.nanny.pre-spawn-environ": _worker_environ()}):
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR, env={"OMP_NUM_THREADS": "1"})
        client = Client(cluster)
    try:
        token = uuid.uuid4().hex[:8]
        shared = client.scatter(payload, broadcast=True)
        futures = [client.submit(_call, fn, shared, key, threads, args, key=f"mocksky-{token}-{key}", pure=False,
                                 priority=-i)
                   for i, key in enumerate(keys)]
        by_fut = dict(zip((f.key for f in futures), keys))
        try:
            for fut in as_completed(futures):
                done(by_fut[fut.key], fut.result())
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
