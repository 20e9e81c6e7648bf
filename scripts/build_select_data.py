"""Build the package data of ``mocksky.select`` from the real data in ``../shared/data``.

Writes, under ``mocksky/data/select/``:

* ``apogee_dr17/apogee_sampling_fractions.csv`` -- the APOGEE-1/APOGEE-2 (DR17) field/cohort table of
  gaiaunlimited 0.3.3, copied byte for byte (with its BSD-3 licence);
* ``gaia_dr2_maglim/maglim_g_nside128.npz`` -- the Rybizki et al. (2020) per-pixel Gaia DR2 G magnitude
  limit (HEALPix nside 128, NESTED, ICRS), stored losslessly as integer centi-magnitudes (the values are
  multiples of 0.1 mag) in a compressed ``.npz`` (with its CC BY-SA 4.0 licence);
* a ``SOURCE.txt`` in each folder with provenance and sha256 sums.

Usage::

    python scripts/build_select_data.py [--shared ../shared/data]

The script is deterministic: running it again reproduces the same files.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "mocksky" / "data" / "select"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_apogee(shared: Path) -> None:
    src = shared / "selection" / "apogee_dr17"
    dst = OUT / "apogee_dr17"
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("apogee_sampling_fractions.csv", "LICENSE_gaiaunlimited_BSD3.txt"):
        shutil.copyfile(src / name, dst / name)
    files = sorted(p.name for p in dst.iterdir() if p.name != "SOURCE.txt")
    sums = "\n".join(f"{_sha256(dst / n)}  ./{n}" for n in files)
    (dst / "SOURCE.txt").write_text(
        "Source: shared/data/selection/apogee_dr17 = PyPI package gaiaunlimited 0.3.3,\n"
        "  gaiaunlimited/data/apogee_sampling_fractions.csv (upstream github.com/gaia-unlimited/gaiaunlimited),\n"
        "  copied byte for byte by scripts/build_select_data.py.\n"
        "Content: APOGEE-1 + APOGEE-2 (DR17) targeting per field and cohort: field centre (RA, DEC, GLON, GLAT),\n"
        "  RADIUS [deg], cohort (short/medium/long, or *_blue/*_red for colour-binned APOGEE-2 fields), H range\n"
        "  (Hmin, Hmax), (J-Ks)0 range (JK0min, JK0max), fracSampling (targeted / candidates) and fracAK\n"
        "  (fraction of candidates with an A_K estimate). Used by mocksky.select.apogee.ApogeeDR17.\n"
        "Papers: Zasowski et al. 2013 AJ 146, 81; Zasowski et al. 2017 AJ 154, 198; Beaton et al. 2021 AJ 162, 302;\n"
        "  Santana et al. 2021 AJ 162, 303; Abdurro'uf et al. 2022 ApJS 259, 35 (DR17); GaiaUnlimited (Cantat-Gaudin\n"
        "  et al. 2023 A&A 669, A55) for the table.\n"
        "Licence: BSD-3-Clause (c) 2022 GaiaUnlimited (LICENSE_gaiaunlimited_BSD3.txt).\n\n"
        f"Files (sha256):\n{sums}\n")


def build_maglim(shared: Path) -> None:
    src = shared / "selection" / "gaia_dr2_maglim"
    dst = OUT / "gaia_dr2_maglim"
    dst.mkdir(parents=True, exist_ok=True)
    maglim = np.load(src / "maglim_g_in_nside128.npy")
    if maglim.shape != (12 * 128 ** 2,) or not np.all(np.isfinite(maglim)):
        raise ValueError(f"unexpected maglim array: shape {maglim.shape}")
    centi = np.rint(maglim * 100.0).astype(np.int16)
    if np.max(np.abs(centi / 100.0 - maglim)) > 1e-9:
        raise ValueError("maglim values are not multiples of 0.01 mag: cannot store them losslessly as int16")
    np.savez_compressed(dst / "maglim_g_nside128.npz", maglim_centimag=centi,
                        nside=np.int64(128), nest=np.bool_(True), frame=np.str_("icrs"))
    shutil.copyfile(src / "LICENSE_CC-BY-SA-4.0.txt", dst / "LICENSE_CC-BY-SA-4.0.txt")
    files = sorted(p.name for p in dst.iterdir() if p.name != "SOURCE.txt")
    sums = "\n".join(f"{_sha256(dst / n)}  ./{n}" for n in files)
    (dst / "SOURCE.txt").write_text(
        "Source: shared/data/selection/gaia_dr2_maglim = GitHub jan-rybizki/gdr2_completeness, commit\n"
        "  1d10a9f788b1e8913f304fb5197e90cb1d5f2a3a, data/maglim_g_in_nside128.npy\n"
        f"  (sha256 {_sha256(src / 'maglim_g_in_nside128.npy')}).\n"
        "Content: maglim_g_nside128.npz, array 'maglim_centimag' (int16, length 196608): the Gaia DR2 G magnitude\n"
        "  limit per HEALPix pixel (nside 128, NESTED, ICRS; pixel = source_id // (2**35 * 4**5)) in units of\n"
        "  0.01 mag; the limit is the G bin (0.1 mag wide) with the most DR2 sources having BP and RP, i.e. the\n"
        "  peak of the observed magnitude histogram (gdr2_completeness tutorial [4], 'last_complete_bin').\n"
        "  Stored losslessly: maglim = maglim_centimag / 100. Used by mocksky.select.gaia (offline Gaia DR3\n"
        "  completeness approximation).\n"
        "Papers: Rybizki et al. 2020 PASP 132, 074501 (GeDR3mock); ASCL 1811.018 (gdr2_completeness).\n"
        "Licence: CC BY-SA 4.0 (LICENSE_CC-BY-SA-4.0.txt): this derived file is shared under the same licence.\n\n"
        f"Files (sha256):\n{sums}\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data",
                    help="the shared real-data folder (default: ../shared/data beside the repository)")
    args = ap.parse_args(argv)
    if not args.shared.is_dir():
        raise SystemExit(f"shared data folder {args.shared} not found")
    build_apogee(args.shared)
    build_maglim(args.shared)
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(REPO)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
