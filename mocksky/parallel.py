"""Execution of a run's chunks: in process, on a local Dask cluster, or on any Dask scheduler.

:func:`run_tasks` calls ``fn(payload, key, *args)`` once per key and hands every result to a callback in the driver
as soon as it is available (the pipeline records finished parts there, so that a killed run can resume):

* ``workers=None`` or ``0`` and no scheduler: a sequential loop in this process (no cluster);
* ``workers=N``: a :class:`dask.distributed.LocalCluster` of N worker processes with one task thread each;
* ``scheduler=ADDRESS``: :class:`dask.distributed.Client` connected to an existing scheduler (e.g.
  ``tcp://host:8786`` of ``dask scheduler`` / ``dask worker`` processes on a real cluster).

The payload (the run plan, tens of MB) is shipped to the workers once (:meth:`~dask.distributed.Client.scatter`
with ``broadcast=True``), not with every task. ``threads`` sets the number of Numba threads used by each task
(default: the CPU cores divided by the number of local workers; every kernel's per-element results do not depend on
it). Progress is shown with tqdm on stderr when it is a terminal (``progress=None``), always (True) or never (False).

The function and its results must be picklable; ``fn`` must be importable by the workers (a module-level function of
an installed or ``PYTHONPATH`` package).
"""
from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from typing import Any, Callable, Iterable, Optional, Sequence

__all__ = ["run_tasks", "default_threads"]

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
    import numba

    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def _call(fn: Callable, payload: Any, key: Any, threads: Optional[int], args: tuple):
    _set_threads(threads)
    return fn(payload, key, *args)


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
        Numba threads per task (default :func:`default_threads` on a local cluster; unchanged in process).
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
            for key in keys:
                _done(key, _call(fn, payload, key, threads, args))
        elif keys:
            _run_dask(fn, payload, keys, args, workers, scheduler, threads, _done)
    finally:
        if bar is not None:
            bar.close()
    log.info("%d task(s) in %.1f s (%s)", len(keys), time.perf_counter() - t0,
             f"scheduler {scheduler}" if scheduler else (f"{workers} local worker(s)" if workers else "in process"))
    return results


def _run_dask(fn, payload, keys, args, workers, scheduler, threads, done) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is not None:
        client = Client(scheduler)
    else:
        if threads is None:
            threads = default_threads(workers)
        # one task thread per worker process: the tasks themselves run Numba-parallel kernels
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, env={"OMP_NUM_THREADS": "1"})
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
