"""Chunked runs: bit-identical catalogues for any number of workers and threads, resume after SIGKILL, manifests
that detect truncated or corrupted parts, refusal to mix runs in one directory."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from mocksky.catalogue import CatalogueIntegrityError, open_vaex, read_catalogue, verify_manifest
from mocksky.parallel import _worker_environ, default_threads, run_tasks
from mocksky.pipeline import RunStateError, chunk_seed, run
from mocksky.recipe import RecipeError, load_recipe, parse_recipe

SCALE = 0.02
SEED = 7
REPO = Path(__file__).resolve().parent.parent


def chunked_text():
    """small_default shrunk (0.5 kpc sphere, two discs, no comparison stage) in chunks of 100 points (~45 chunks)."""
    text = load_recipe("small_default").text.split("[compare]")[0]
    text = text.replace("radius = 1.0", "radius = 0.5").replace("pilot = 1000", "pilot = 300").replace(
        'components = ["young disk", "middle disk", "old disk", "highA disk", "stellar halo"]',
        'components = ["young disk", "old disk"]')
    return text + "\n[run]\nchunk_points = 100\n"


def shas(ddir):
    man = json.loads((Path(ddir) / "manifest.json").read_text())
    return [(p["file"], p["rows"], p["sha256"]) for p in man["parts"]]


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("recipe") / "chunked.toml"
    p.write_text(chunked_text())
    return p


@pytest.fixture(scope="module")
def reference(recipe_file, tmp_path_factory):
    """Uninterrupted in-process run (all cores)."""
    return run(recipe_file, tmp_path_factory.mktemp("ref"), seed=SEED, scale=SCALE, progress=False)


def test_chunk_seed_is_spawn():
    kids = np.random.SeedSequence(42).spawn(5)
    for k in range(5):
        assert chunk_seed(42, k).generate_state(4).tolist() == kids[k].generate_state(4).tolist()


def test_reference_dataset(reference):
    r = reference
    s = r.summary
    assert r.catalogue.is_dir() and (r.catalogue / "manifest.json").is_file()
    tp = s["throughput"]
    assert tp["chunks"] >= 10 and tp["chunks_run"] == tp["chunks"] and tp["stars_kept"] == r.n_rows > 50
    assert tp["stars_generated"] >= tp["stars_kept"] and tp["stars_per_s"] > 0
    verify_manifest(r.catalogue)
    # the dataset reads back identically through vaex and through h5py
    tab = read_catalogue(r.catalogue)
    df = open_vaex(r.catalogue)
    try:
        assert len(df) == len(tab["ra"]) == r.n_rows
        for c in ("ra", "parallax", "phot_g_mean_mag", "component"):
            np.testing.assert_array_equal(df[c].values, tab[c])
    finally:
        df.close()


def test_threads_and_workers_give_identical_parts(reference, recipe_file, tmp_path):
    """One chunk (and one component of the plan) at a time on 2 Numba threads in process, and 2 Dask worker
    processes, reproduce the reference parts (in process, one chunk and one planned component per core at a time on 1
    Numba thread each) byte for byte."""
    one = run(recipe_file, tmp_path / "t2", seed=SEED, scale=SCALE, threads=2, progress=False)
    assert shas(one.catalogue) == shas(reference.catalogue)
    two = run(recipe_file, tmp_path / "w2", seed=SEED, scale=SCALE, workers=2, progress=False)
    assert shas(two.catalogue) == shas(reference.catalogue)
    assert two.summary["run"]["execution"]["workers"] == 2


def test_parquet_parts_identical_for_workers_and_equal_to_hdf5(reference, recipe_file, tmp_path):
    """The same run written as Parquet parts: byte-identical parts in process and on 2 Dask workers, the same rows
    and values as the HDF5 reference (vaex opens the parts as one table), and a truncated part caught by the
    manifest."""
    pq = tmp_path / "parquet.toml"
    text = recipe_file.read_text()
    assert 'format = "hdf5"' in text
    pq.write_text(text.replace('format = "hdf5"', 'format = "parquet"'))
    one = run(pq, tmp_path / "p1", seed=SEED, scale=SCALE, progress=False)
    two = run(pq, tmp_path / "p2", seed=SEED, scale=SCALE, workers=2, progress=False)
    assert shas(one.catalogue) == shas(two.catalogue)
    assert all(f.endswith(".parquet") for f, _, _ in shas(one.catalogue))
    assert [r for _, r, _ in shas(one.catalogue)] == [r for _, r, _ in shas(reference.catalogue)]
    ref = read_catalogue(reference.catalogue)
    df = open_vaex(one.catalogue)
    try:
        assert len(df) == reference.n_rows
        for c in ("ra", "dec", "parallax", "phot_g_mean_mag", "Jr", "component"):
            np.testing.assert_array_equal(df[c].values, ref[c])
    finally:
        df.close()
    part = sorted(one.catalogue.glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:-100])
    with pytest.raises(CatalogueIntegrityError, match=f"{part.name}: truncated"):
        verify_manifest(one.catalogue)


def test_external_scheduler_gives_identical_parts(reference, recipe_file, tmp_path):
    """``mocksky run --scheduler ADDRESS`` on a separately started ``dask scheduler`` + ``dask worker`` (two other
    processes, as on a real cluster) reproduces the reference parts byte for byte."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    sfile = tmp_path / "scheduler.json"
    common = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sfile)], **common)]
    try:
        t0 = time.time()
        while not (sfile.is_file() and sfile.stat().st_size > 0) and time.time() - t0 < 60:
            time.sleep(0.1)
        address = json.loads(sfile.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--no-dashboard", "--local-directory", str(tmp_path)], **common))
        from dask.distributed import Client

        with Client(address, timeout=60) as c:
            c.wait_for_workers(1, timeout=60)
        out = tmp_path / "ext"
        cli = subprocess.run([sys.executable, "-m", "mocksky.cli", "run", str(recipe_file), "--out", str(out),
                              "--seed", str(SEED), "--scale", str(SCALE), "--scheduler", address, "--no-progress"],
                             env=env, capture_output=True, text=True, timeout=600)
        assert cli.returncode == 0, cli.stderr[-2000:]
        assert shas(out / "catalogue") == shas(reference.catalogue)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["run"]["execution"]["scheduler"] == address
    finally:  # the worker's nanny has a child process of its own: stop the whole trees
        tree = []
        for p in procs:
            try:
                tree += psutil.Process(p.pid).children(recursive=True) + [psutil.Process(p.pid)]
            except psutil.NoSuchProcess:
                pass
        for q in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                q.terminate()
        for q in psutil.wait_procs(tree, timeout=30)[1]:
            q.kill()
        for p in procs:
            p.wait(timeout=30)


def _slow_square(payload, key, log):
    log.append(("start", key, threading.get_ident()))
    if key == payload["fail"]:
        raise ValueError(f"task {key} failed")
    time.sleep(0.05)
    log.append(("end", key, threading.get_ident()))
    return key * key


def test_run_tasks_in_process_overlaps_tasks_and_stops_on_error():
    """In process, tasks run cores // threads at a time in threads (results as they finish, in the driver); with
    threads = cores they run one after another; the first error is re-raised and no task starts after it (in any
    thread, not only once the driver has read the error)."""
    cores = default_threads(None)
    seen = []
    log = []
    res = run_tasks(_slow_square, {"fail": None}, range(8), (log,), threads=1, progress=False,
                    on_result=lambda k, r: seen.append((k, r, threading.get_ident())))
    assert res == {k: k * k for k in range(8)}
    assert sorted(seen)[3][:2] == (3, 9) and {t for _, _, t in seen} == {threading.get_ident()}
    starts = [k for e, k, _ in log if e == "start"]
    assert sorted(starts) == list(range(8)) and sorted(starts[:2]) == [0, 1]
    overlapped = any(log[i][0] == "start" and log[i + 1][0] == "start" for i in range(len(log) - 1))
    assert overlapped == (cores > 1)
    if cores > 1:
        assert len({t for _, _, t in log}) == min(cores, 8)
    log.clear()
    run_tasks(_slow_square, {"fail": None}, range(4), (log,), threads=cores, progress=False)
    assert [e for e, _, _ in log] == ["start", "end"] * 4
    log.clear()
    with pytest.raises(ValueError, match="task 2 failed"):
        run_tasks(_slow_square, {"fail": 2}, range(40), (log,), threads=1, progress=False)
    assert len([e for e, _, _ in log if e == "start"]) <= 2 + cores


def _blas_threads(payload, key):
    from threadpoolctl import threadpool_info

    return sorted({d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"})


def test_run_tasks_in_process_limits_blas_to_one_thread():
    """In process, tasks see one BLAS thread (an idle OpenBLAS pool busy-waits on the cores the other tasks run on);
    the process's own setting is restored afterwards. Dask's workers get the same from OPENBLAS_NUM_THREADS=1."""
    from threadpoolctl import threadpool_info

    np.dot(np.ones(10), np.ones(10))  # NumPy's BLAS is loaded
    before = sorted({d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"})
    assert before, "no BLAS library found by threadpoolctl"
    for threads in (1, default_threads(None)):  # tasks in a thread pool, and one after another
        res = run_tasks(_blas_threads, None, range(3), threads=threads, progress=False)
        assert all(v == [1] for v in res.values()), res
    assert sorted({d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"}) == before
    assert str(_worker_environ().get("OPENBLAS_NUM_THREADS")) == "1"


def test_dask_workers_spawn_without_malloc_trim():
    """Local workers are spawned without Dask's MALLOC_TRIM_THRESHOLD_ (it made chunks ~25 % slower), keeping the
    rest of Dask's pre-spawn environment."""
    import dask
    import distributed  # noqa: F401

    env = _worker_environ()
    assert "MALLOC_TRIM_THRESHOLD_" not in env
    full = dask.config.get("distributed.nanny.pre-spawn-environ")
    assert env == {k: v for k, v in full.items() if k != "MALLOC_TRIM_THRESHOLD_"}


def test_resume_after_sigkill(reference, recipe_file, tmp_path):
    """SIGKILL a run after its first part appears; the re-run skips the complete parts and ends with the reference
    catalogue."""
    out = tmp_path / "killed"
    ddir = out / "catalogue"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "mocksky.cli", "run", str(recipe_file), "--out", str(out),
                             "--seed", str(SEED), "--scale", str(SCALE), "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while not list(ddir.glob("part-*.hdf5")) and time.time() - t0 < 240 and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_ref = reference.summary["throughput"]["chunks"]
    done = list((ddir / ".state").glob("chunk-*.json"))
    assert 0 < len(list(ddir.glob("part-*.hdf5"))) and len(done) < n_ref and not (ddir / "manifest.json").exists()
    # a torn write left behind and a truncated unrecorded part are cleaned up / redone
    (ddir / ".part-99999.hdf5.deadbeef.tmp").write_bytes(b"partial")
    r = run(recipe_file, out, scale=SCALE, progress=False)  # no seed: the run's own seed is reused
    assert r.seed == SEED
    assert r.summary["throughput"]["chunks_resumed"] == len(done)
    assert shas(r.catalogue) == shas(reference.catalogue)
    assert not list(ddir.glob(".*.tmp"))


def test_dask_worker_killed_mid_run(reference, recipe_file, tmp_path):
    """SIGKILL one of two Dask worker processes once the first part is written: its nanny restarts it, the scheduler
    runs its chunk again, and the run ends with the reference catalogue and no temporary file (a torn write of the
    killed worker, planted at the kill, is removed)."""
    out = tmp_path / "dk"
    ddir = out / "catalogue"
    killed = []

    def killer():
        t0 = time.time()
        while time.time() - t0 < 300:
            if ddir.is_dir() and list(ddir.glob("part-*.hdf5")):
                workers = [c for c in psutil.Process().children() if "--multiprocessing-fork" in c.cmdline()]
                if workers:
                    (ddir / ".part-99998.hdf5.0123456789ab.tmp").write_bytes(b"torn")
                    os.kill(workers[0].pid, signal.SIGKILL)
                    killed.append(workers[0].pid)
                    return
            time.sleep(0.01)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    r = run(recipe_file, out, seed=SEED, scale=SCALE, workers=2, progress=False)
    th.join(timeout=10)
    assert killed and not psutil.pid_exists(killed[0])
    assert shas(r.catalogue) == shas(reference.catalogue)
    assert not list(ddir.glob(".*.tmp")) and not list((ddir / ".state").glob(".*.tmp"))


def test_manifest_detects_truncated_and_corrupted_parts(reference, recipe_file, tmp_path):
    ddir = tmp_path / "copy"
    shutil.copytree(reference.catalogue, ddir)
    parts = sorted(ddir.glob("part-*.hdf5"))
    data = parts[0].read_bytes()
    parts[0].write_bytes(data[: len(data) // 2])
    b = bytearray(parts[1].read_bytes())
    b[len(b) // 2] ^= 0xFF
    parts[1].write_bytes(bytes(b))
    with pytest.raises(CatalogueIntegrityError) as ei:
        verify_manifest(ddir)
    msg = str(ei.value)
    assert f"{parts[0].name}: truncated" in msg and f"{parts[1].name}: corrupted" in msg
    # re-running in the damaged directory redoes exactly those parts
    out = tmp_path / "out"
    out.mkdir()
    shutil.move(str(ddir), str(out / "catalogue"))
    r = run(recipe_file, out, seed=SEED, scale=SCALE, progress=False)
    tp = r.summary["throughput"]
    assert tp["chunks_run"] == 2 and tp["chunks_resumed"] == tp["chunks"] - 2
    assert shas(r.catalogue) == shas(reference.catalogue)


def test_other_run_in_directory_is_refused(reference, recipe_file, tmp_path, monkeypatch):
    import mocksky.pipeline as pl

    out = tmp_path / "o"
    shutil.copytree(reference.catalogue, out / "catalogue")
    fp = json.loads((out / "catalogue" / ".state" / "run.json").read_text())["fingerprint"]
    assert fp["code_sha256"] == pl.code_sha256() and len(fp["code_sha256"]) == 64
    # another version of the code (same version string) does not resume this run's parts
    monkeypatch.setattr(pl, "code_sha256", lambda: "0" * 64)
    with pytest.raises(RunStateError, match="code_sha256"):
        run(recipe_file, out, seed=SEED, scale=SCALE, progress=False)
    monkeypatch.undo()
    with pytest.raises(RunStateError, match="seed"):
        run(recipe_file, out, seed=SEED + 1, scale=SCALE, progress=False)
    with pytest.raises(RunStateError, match="scale"):
        run(recipe_file, out, seed=SEED, scale=SCALE / 2, progress=False)
    with pytest.raises(RecipeError, match="workers"):
        run(recipe_file, out, seed=SEED, scale=SCALE, workers=-1)
    with pytest.raises(RecipeError, match="chunk_points"):
        parse_recipe(chunked_text().replace("chunk_points = 100", "chunk_points = 5"))
