"""The contract every Potential implementation must satisfy (shared by the potential tests).

Checks, at points spread over 0.05-50 kpc in R and |z| < 20 kpc:
* the gradient equals central finite differences of Phi;
* the Hessian equals central finite differences of the gradient;
* the density equals the Laplacian of Phi / (4 pi G) (Poisson's equation);
* the numba kernel returns the same Phi and gradient as the vectorised methods;
* the public Cartesian API (potential, force, force_deriv, vcirc, epicycle_frequencies) agrees with the
  cylindrical methods; z-symmetry; Quantities accepted.
"""
import astropy.units as u
import numpy as np

from mocksky.units import G


def sample_points(n=60, seed=3, Rmax=50.0, zmax=20.0):
    rng = np.random.default_rng(seed)
    R = np.exp(rng.uniform(np.log(0.05), np.log(Rmax), n))
    z = np.sign(rng.uniform(-1, 1, n)) * np.exp(rng.uniform(np.log(0.01), np.log(zmax), n))
    return R, z


def check_potential_contract(pot, grad_tol=1e-6, hess_tol=1e-4, rho_tol=1e-3, kernel_tol=1e-12, points=None):
    R, z = points if points is not None else sample_points()
    phi = pot._phi(R, z)
    gR, gz = pot._grad(R, z)
    assert phi.shape == R.shape and np.all(np.isfinite(phi)) and np.all(phi < 0) | np.all(np.isfinite(phi))
    gnorm = np.hypot(gR, gz)
    # gradient vs finite differences of Phi (4th-order stencil)
    h = 1e-4 * np.maximum(np.hypot(R, z), 0.05) * 0.1
    def d4(f, x0, step, axis):
        if axis == 0:
            v = [f(x0 + k * step, z) for k in (-2, -1, 1, 2)]
        else:
            v = [f(R, x0 + k * step) for k in (-2, -1, 1, 2)]
        return (v[0] - 8 * v[1] + 8 * v[2] - v[3]) / (12 * step)
    fdR = d4(pot._phi, R, h, 0)
    fdz = d4(pot._phi, z, h, 1)
    err_g = np.max(np.hypot(fdR - gR, fdz - gz) / gnorm)
    assert err_g < grad_tol, f"gradient vs finite differences: max rel err {err_g:.2e}"
    # Hessian vs finite differences of the gradient
    HRR, Hzz, HRz = pot._hess(R, z)
    fRR = d4(lambda a, b: pot._grad(a, b)[0], R, h, 0)
    fzz = d4(lambda a, b: pot._grad(a, b)[1], z, h, 1)
    fRz = d4(lambda a, b: pot._grad(a, b)[0], z, h, 1)
    scale = np.abs(fRR) + np.abs(fzz) + np.abs(gR) / R
    err_h = np.max((np.abs(HRR - fRR) + np.abs(Hzz - fzz) + np.abs(HRz - fRz)) / scale)
    assert err_h < hess_tol, f"Hessian vs finite differences: max rel err {err_h:.2e}"
    # Poisson: density vs Laplacian
    rho = pot._density(R, z)
    lap = (HRR + gR / R + Hzz) / (4 * np.pi * G)
    rho_scale = np.abs(HRR) + np.abs(gR / R) + np.abs(Hzz)
    err_rho = np.max(np.abs(rho - lap) / (rho_scale / (4 * np.pi * G)))
    assert err_rho < rho_tol, f"density vs Laplacian/(4 pi G): max rel err {err_rho:.2e}"
    # numba kernel
    func, params = pot.kernel()
    k = np.array([func(a, b, params) for a, b in zip(R, z)])
    err_k = max(np.max(np.abs(k[:, 0] / phi - 1)), np.max(np.hypot(k[:, 1] - gR, k[:, 2] - gz) / gnorm))
    assert err_k < kernel_tol, f"kernel vs vectorised methods: max rel err {err_k:.2e}"
    # z-symmetry
    assert np.allclose(pot._phi(R, -z), phi, rtol=1e-12, atol=0)
    # Cartesian API
    phiang = np.linspace(0, 2 * np.pi, len(R), endpoint=False)
    xyz = np.stack([R * np.cos(phiang), R * np.sin(phiang), z], axis=1)
    assert np.allclose(pot.potential(xyz * u.kpc), phi, rtol=1e-12)
    F = pot.force(xyz)
    assert np.allclose(F[:, 0], -gR * np.cos(phiang), rtol=1e-10, atol=1e-12 * gnorm.max())
    assert np.allclose(F[:, 2], -gz, rtol=1e-10, atol=1e-12 * gnorm.max())
    dF = pot.force_deriv(xyz)
    assert dF.shape == (len(R), 6)
    assert np.all(np.abs(-(dF[:, 0] + dF[:, 1] + dF[:, 2]) / (4 * np.pi * G) - lap) <= 1e-8 * rho_scale / (4 * np.pi * G))
    assert np.allclose(pot.density(xyz), rho, rtol=1e-12)
    Rp = np.array([2.0, 8.0, 15.0])
    vc = pot.vcirc(Rp * u.kpc)
    assert np.allclose(vc**2, Rp * pot._grad(Rp, 0 * Rp)[0], rtol=1e-12)
    kappa, nu, Om = pot.epicycle_frequencies(Rp)
    assert np.allclose(Om, vc / Rp, rtol=1e-12)
    assert np.all(kappa > 0) and np.all(nu > 0)
    return dict(grad=err_g, hess=err_h, rho=err_rho, kernel=err_k)
