"""Where the product runs: ``numpy`` (CPU), ``torch`` and ``cupy`` (CUDA), one interface.

Every backend returns the row digests of all rounds, ``(rounds, n)`` uint64 on the host; the
Merkle tree is built from them on the host (``solution``). Only those 8 bytes per row leave
the device.

The device backends generate the matrices and digests on the device in signed int64 with
wrap-around, which has the same bits as PROOF.md's unsigned arithmetic, except for right
shifts: these are arithmetic on int64, so a logical shift by k is emulated as
``(z >> k) & (2^(64-k) - 1)``, and the big constants are passed as the int64 with the same
bits. That code is shared by torch and cupy (``_Int64Solver``); the tests run it with torch on
the CPU and with NumPy standing in for CuPy. Work goes in blocks of rows so device memory
stays near two nxn int8 matrices plus ``BLOCK_BYTES``.
"""

from __future__ import annotations

import logging
import platform
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import numpy as np

from omnitensor_agent.proof import spec

log = logging.getLogger(__name__)

CHOICES = ("auto", "torch", "cupy", "numpy")
BLOCK_BYTES = 256 * 1024 * 1024  # int64 working set of one block of rows on a device
NUMPY_BLOCK_BYTES = 32 * 1024 * 1024  # float64 block of rows on the CPU (cache-friendly)
NUMPY_WHOLE_B_BYTES = 1 << 30  # keep B as float64 whole up to this size (n ≤ 11585)

_GAMMA = spec.signed64(spec.GAMMA)
_MIX_1 = spec.signed64(spec.MIX_1)
_MIX_2 = spec.signed64(spec.MIX_2)

StopCheck = Callable[[], bool]


class BackendUnavailable(RuntimeError):
    """The backend's library or a device for it is missing."""


class DeviceNotFound(LookupError):
    """No visible device has the requested uuid or index."""


class Cancelled(RuntimeError):
    """The work was stopped before it finished (agent shutdown, deadline passed)."""


def _never() -> bool:
    return False


def block_rows(n: int, budget: int) -> int:
    """Rows per block: a multiple of 64 (so ≥ 64 > 16, as ``_int_mm`` wants), at most n."""
    rows = max(spec.LEAF_ROWS, budget // (8 * n) // spec.LEAF_ROWS * spec.LEAF_ROWS)
    return min(n, rows)


def uuid_key(value: str) -> str:
    """A GPU uuid compared without its ``GPU-``/``MIG-`` prefix and case."""
    value = value.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


class Backend:
    name = "?"

    def device_name(self, device: str | int | None = None) -> str:
        raise NotImplementedError

    def devices(self) -> list[int | None]:
        """The devices a challenge may name (None: the only one)."""
        return [None]

    def warm_up(self) -> None:
        """A tiny solve on every device, so that the first challenge does not pay for
        starting CUDA, loading kernels and checking the int8 GEMM against its deadline."""
        for device in self.devices():
            self.digests(bytes(32), spec.LEAF_ROWS, 1, device=device)

    def digests(
        self,
        seed: bytes,
        n: int,
        rounds: int,
        *,
        device: str | int | None = None,
        should_stop: StopCheck = _never,
    ) -> np.ndarray:
        """Row digests of ``C_r = A_r @ B`` for every round: ``(rounds, n)`` uint64."""
        raise NotImplementedError


# --- NumPy: honest and slow ----------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


class NumpyBackend(Backend):
    """Float64 BLAS product: exact, since every partial sum is an integer below 2^53, and
    about 50 times faster than NumPy's integer matmul."""

    name = "numpy"

    def device_name(self, device: str | int | None = None) -> str:
        return f"{_cpu_model()} (NumPy)"

    def digests(self, seed, n, rounds, *, device=None, should_stop=_never):
        spec.check_shape(n, rounds)
        b = spec.matrix_rows(spec.key(seed, b"B"), n, 0, n)
        whole = n * n * 8 <= NUMPY_WHOLE_B_BYTES
        b_f64 = b.astype(np.float64) if whole else None
        s, w = spec.digest_vectors(seed, n)
        step = block_rows(n, NUMPY_BLOCK_BYTES)
        k_step = max(1, NUMPY_BLOCK_BYTES // (8 * n))
        out = np.empty((rounds, n), dtype=np.uint64)
        for r in range(rounds):
            key_a = spec.key(seed, spec.round_label(r))
            for first in range(0, n, step):
                if should_stop():
                    raise Cancelled("stopped")
                count = min(step, n - first)
                a = spec.matrix_rows(key_a, n, first, count).astype(np.float64)
                if b_f64 is not None:
                    c = a @ b_f64
                else:  # B would not fit as float64: slices of its rows, converted as needed
                    c = np.zeros((count, n), dtype=np.float64)
                    for k in range(0, n, k_step):
                        c += a[:, k : k + k_step] @ b[k : k + k_step].astype(np.float64)
                out[r, first : first + count] = spec.row_digests(c.astype(np.int64), s, w)
        return out


# --- the int64 device code shared by torch and cupy ----------------------------------------


def _srl(z: Any, k: int) -> Any:
    """Logical right shift of int64 values (arithmetic shift, then clear the sign copies)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


class _Int64Solver(Backend):
    """Generation, product and digests on a device; subclasses supply the array library."""

    def _arange(self, start: int, stop: int, dev: Any) -> Any:  # int64
        raise NotImplementedError

    def _int8_rows(self, words: Any, count: int, n: int) -> Any:
        raise NotImplementedError

    def _empty_int8(self, n: int, dev: Any) -> Any:
        raise NotImplementedError

    def _as_int64(self, x: Any) -> Any:
        raise NotImplementedError

    def _int_mm(self, a: Any, b: Any, bt: Any) -> Any:
        """``a @ b`` as int32, exact; ``bt`` is ``b`` transposed and contiguous (so ``b`` is
        column-major: the layout int8 GEMMs want)."""
        raise NotImplementedError

    def _to_host_u64(self, x: Any) -> np.ndarray:
        raise NotImplementedError

    def _contiguous(self, x: Any) -> Any:
        raise NotImplementedError

    def _device(self, device: str | int | None) -> Any:
        raise NotImplementedError

    def _context(self, dev: Any) -> Any:
        raise NotImplementedError

    # the arithmetic of PROOF.md section 2, on int64
    def words(self, key_: int, start: int, count: int, dev: Any) -> Any:
        z = self._arange(start + 1, start + count + 1, dev)
        z *= _GAMMA
        z += spec.signed64(key_)
        z ^= _srl(z, 30)
        z *= _MIX_1
        z ^= _srl(z, 27)
        z *= _MIX_2
        z ^= _srl(z, 31)
        return z

    def matrix_rows(self, key_: int, n: int, first: int, count: int, dev: Any) -> Any:
        per_row = n // 8
        return self._int8_rows(self.words(key_, first * per_row, count * per_row, dev), count, n)

    def row_digests(self, c: Any, s: Any, w: Any) -> Any:
        v = self._as_int64(c)
        v += s
        v *= v
        v *= w
        return v.sum(1)

    def digests(self, seed, n, rounds, *, device=None, should_stop=_never):
        spec.check_shape(n, rounds)
        dev = self._device(device)
        with self._context(dev):
            step = block_rows(n, BLOCK_BYTES)
            key_b = spec.key(seed, b"B")
            # B^T, row-major: a block of B's rows is a block of its columns
            bt = self._empty_int8(n, dev)
            for first in range(0, n, step):
                count = min(step, n - first)
                bt[:, first : first + count] = self.matrix_rows(key_b, n, first, count, dev).T
            b = bt.T
            both = self.words(spec.key(seed, b"D"), 0, 2 * n, dev)
            s, w = both[:n], both[n:]
            out = np.empty((rounds, n), dtype=np.uint64)
            for r in range(rounds):
                key_a = spec.key(seed, spec.round_label(r))
                for first in range(0, n, step):
                    if should_stop():
                        raise Cancelled("stopped")
                    count = min(step, n - first)
                    a = self.matrix_rows(key_a, n, first, count, dev)
                    d = self.row_digests(self._int_mm(a, b, bt), s, w)
                    out[r, first : first + count] = self._to_host_u64(d)
            return out

    def _check_int_mm(self, dev: Any, fast: Callable[[Any, Any, Any], Any]) -> bool:
        """Whether the fast int8 GEMM gives the exact product here (layouts and library
        versions vary); checked once per device against the NumPy reference."""
        n = 64
        a_host = spec.matrix_rows(1, n, 0, n)
        b_host = spec.matrix_rows(2, n, 0, n)
        want = a_host.astype(np.int64) @ b_host.astype(np.int64)
        try:
            a = self.matrix_rows(1, n, 0, n, dev)
            bt = self._contiguous(self.matrix_rows(2, n, 0, n, dev).T)
            got = self._to_host_i64(fast(a, bt.T, bt))
        except Exception as exc:  # any library error means: not usable here
            log.warning("%s: int8 GEMM unavailable (%s); using the exact slow path", self.name, exc)
            return False
        if not np.array_equal(got, want):
            log.warning("%s: int8 GEMM gave a wrong product; using the exact slow path", self.name)
            return False
        return True

    def _to_host_i64(self, x: Any) -> np.ndarray:
        return self._to_host_u64(self._as_int64(x)).view(np.int64)


class _NoContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- PyTorch ---------------------------------------------------------------------------------


class TorchBackend(_Int64Solver):
    """``torch._int_mm`` (int8xint8→int32 on tensor cores). ``cpu=True`` runs the same code
    on the CPU (for tests); where ``_int_mm`` is missing or wrong the product falls back to
    exact float64."""

    name = "torch"

    def __init__(self, *, cpu: bool = False, int_mm: bool = True) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailable(
                "PyTorch is not installed (pip install 'omnitensor-agent[torch]')"
            ) from None
        self.torch = torch
        self.cpu = cpu
        if not cpu and not torch.cuda.is_available():
            raise BackendUnavailable("PyTorch sees no CUDA device")
        self._want_int_mm = int_mm
        self._fast: dict[str, bool] = {}

    def _device(self, device):
        torch = self.torch
        if self.cpu:
            return torch.device("cpu")
        count = torch.cuda.device_count()
        if device is None or device == "":
            return torch.device("cuda", torch.cuda.current_device())
        if isinstance(device, int) or str(device).isdigit():
            index = int(device)
            if index >= count:
                raise DeviceNotFound(f"no CUDA device {index} ({count} visible)")
            return torch.device("cuda", index)
        for index in range(count):
            found = getattr(torch.cuda.get_device_properties(index), "uuid", None)
            if found is not None and uuid_key(str(found)) == uuid_key(device):
                return torch.device("cuda", index)
        raise DeviceNotFound(f"no visible CUDA device has uuid {device}")

    def _context(self, dev):
        return self.torch.cuda.device(dev) if dev.type == "cuda" else _NoContext()

    def devices(self):
        return [None] if self.cpu else list(range(self.torch.cuda.device_count()))

    def device_name(self, device=None):
        dev = self._device(device)
        if dev.type == "cpu":
            return f"{_cpu_model()} (PyTorch CPU)"
        props = self.torch.cuda.get_device_properties(dev)
        return f"{props.name} (GPU-{props.uuid})"

    def _arange(self, start, stop, dev):
        return self.torch.arange(start, stop, dtype=self.torch.int64, device=dev)

    def _int8_rows(self, words, count, n):
        return words.view(self.torch.int8).view(count, n)

    def _empty_int8(self, n, dev):
        return self.torch.empty((n, n), dtype=self.torch.int8, device=dev)

    def _as_int64(self, x):
        return x.to(self.torch.int64)

    def _to_host_u64(self, x):
        return x.cpu().numpy().view(np.uint64)

    def _contiguous(self, x):
        return x.contiguous()

    def _fast_mm(self, a, b, bt):
        return self.torch._int_mm(a, b)

    def _int_mm(self, a, b, bt):
        key = str(a.device)
        if key not in self._fast:
            self._fast[key] = self._want_int_mm and self._check_int_mm(a.device, self._fast_mm)
        if self._fast[key]:
            return self._fast_mm(a, b, bt)
        f64 = self.torch.float64
        return (a.to(f64) @ b.to(f64)).to(self.torch.int32)


# --- CuPy ------------------------------------------------------------------------------------


class CupyBackend(_Int64Solver):
    """cuBLAS ``gemmEx`` int8xint8→int32 through CuPy, exact int32 matmul as the fallback.
    ``xp=numpy`` runs the same array code on the CPU (for tests)."""

    name = "cupy"

    def __init__(self, xp: Any = None) -> None:
        if xp is None:
            try:
                import cupy as xp
            except ImportError:
                raise BackendUnavailable(
                    "CuPy is not installed (pip install 'omnitensor-agent[cupy]')"
                ) from None
            try:
                if xp.cuda.runtime.getDeviceCount() < 1:
                    raise BackendUnavailable("CuPy sees no CUDA device")
            except xp.cuda.runtime.CUDARuntimeError as exc:
                raise BackendUnavailable(f"CuPy cannot use CUDA: {exc}") from None
        self.xp = xp
        self.on_gpu = xp.__name__ == "cupy"
        self._fast: dict[int, bool] = {}

    def _device(self, device):
        if not self.on_gpu:
            return None
        runtime = self.xp.cuda.runtime
        count = runtime.getDeviceCount()
        if device is None or device == "":
            return self.xp.cuda.Device().id
        if isinstance(device, int) or str(device).isdigit():
            if int(device) >= count:
                raise DeviceNotFound(f"no CUDA device {device} ({count} visible)")
            return int(device)
        for index in range(count):
            raw = runtime.getDeviceProperties(index).get("uuid")
            found = (
                str(uuidlib.UUID(bytes=raw)) if isinstance(raw, bytes) and len(raw) == 16 else ""
            )
            if found and uuid_key(found) == uuid_key(device):
                return index
        raise DeviceNotFound(f"no visible CUDA device has uuid {device}")

    def _context(self, dev):
        return self.xp.cuda.Device(dev) if self.on_gpu else _NoContext()

    def devices(self):
        return list(range(self.xp.cuda.runtime.getDeviceCount())) if self.on_gpu else [None]

    def device_name(self, device=None):
        dev = self._device(device)
        if not self.on_gpu:
            return f"{_cpu_model()} ({self.xp.__name__} standing in for CuPy)"
        name = self.xp.cuda.runtime.getDeviceProperties(dev)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def _arange(self, start, stop, dev):
        return self.xp.arange(start, stop, dtype=self.xp.int64)

    def _int8_rows(self, words, count, n):
        return words.view(self.xp.int8).reshape(count, n)

    def _empty_int8(self, n, dev):
        return self.xp.empty((n, n), dtype=self.xp.int8)

    def _as_int64(self, x):
        return x.astype(self.xp.int64)

    def _to_host_u64(self, x):
        host = self.xp.asnumpy(x) if self.on_gpu else np.asarray(x)
        return host.view(np.uint64)

    def _contiguous(self, x):
        return self.xp.ascontiguousarray(x)

    def _gemm_ex(self, a, b, bt):
        """Row-major ``C = A @ B`` is column-major ``C^T = B^T A^T``: cuBLAS "TN" with ``bt``
        (B^T row-major = B column-major, transposed by cuBLAS) first and ``a`` (row-major =
        A^T column-major) second; C^T column-major is C row-major."""
        from cupy.cuda import cublas, device

        xp = self.xp
        rows, n = a.shape
        c = xp.empty((rows, n), dtype=xp.int32)
        one, zero = np.array(1, dtype=np.int32), np.array(0, dtype=np.int32)
        r8 = getattr(xp.cuda.runtime, "CUDA_R_8I", 3)
        r32 = getattr(xp.cuda.runtime, "CUDA_R_32I", 10)
        cublas.gemmEx(
            device.get_cublas_handle(),
            cublas.CUBLAS_OP_T,
            cublas.CUBLAS_OP_N,
            n,
            rows,
            n,
            one.ctypes.data,
            bt.data.ptr,
            r8,
            n,
            a.data.ptr,
            r8,
            n,
            zero.ctypes.data,
            c.data.ptr,
            r32,
            n,
            getattr(cublas, "CUBLAS_COMPUTE_32I", 72),
            getattr(cublas, "CUBLAS_GEMM_DEFAULT", -1),
        )
        return c

    def _int_mm(self, a, b, bt):
        xp = self.xp
        if self.on_gpu:
            dev = xp.cuda.Device().id
            if dev not in self._fast:
                self._fast[dev] = self._check_int_mm(dev, self._gemm_ex)
            if self._fast[dev]:
                return self._gemm_ex(a, b, bt)
        return xp.matmul(a.astype(xp.int32), b.astype(xp.int32))


# --- choosing one --------------------------------------------------------------------------


def make_backend(name: str = "auto") -> Backend:
    """A backend by name; ``auto`` is torch with CUDA, else cupy with CUDA, else numpy."""
    if name == "numpy":
        return NumpyBackend()
    if name == "torch":
        return TorchBackend()
    if name == "cupy":
        return CupyBackend()
    if name != "auto":
        raise ValueError(f"unknown proof backend {name!r} (choose from {', '.join(CHOICES)})")
    for cls in (TorchBackend, CupyBackend):
        try:
            return cls()
        except BackendUnavailable as exc:
            log.debug("proof backend %s not usable: %s", cls.name, exc)
    return NumpyBackend()
