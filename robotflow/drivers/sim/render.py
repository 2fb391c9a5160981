"""Headless offscreen rendering of MuJoCo cameras, with automatic choice of the OpenGL backend.

Backend choice: `MUJOCO_GL` is respected when set (egl, osmesa, glfw). Otherwise EGL is tried, then
OSMesa, each in a short-lived subprocess. A probe in a subprocess is needed because PyOpenGL fixes its
platform (`PYOPENGL_PLATFORM`) on first import, so a failed EGL attempt would poison a later OSMesa one
in this process. The winner is written to `MUJOCO_GL` so child processes skip the probe.

We do not use `mujoco.Renderer`: it picks its GL context class from `MUJOCO_GL` when `mujoco` is first
imported, which is before we know which backend works. The few `mjr_*` calls it makes are done here.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import weakref

import mujoco
import numpy as np

_BACKENDS = ("egl", "osmesa")
_chosen: str | None = None
_live: weakref.WeakSet = weakref.WeakSet()
_atexit_registered = False


def _close_all() -> None:
    # Runs before mujoco.egl's own atexit eglTerminate (registered earlier, so run later): contexts
    # freed after the display is gone would print EGL errors at interpreter exit.
    for cam in list(_live):
        try:
            cam.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


_PROBE = """
import sys
from mujoco.{b} import GLContext
ctx = GLContext(16, 16)
ctx.make_current()
ctx.free()
"""


class RenderBackendError(RuntimeError):
    """No OpenGL backend could create an offscreen context."""


def _probe(backend: str) -> str | None:
    """None if `backend` can make a context, else the last line of its error."""
    env = dict(os.environ, MUJOCO_GL=backend)
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE.format(b=backend)], env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    if r.returncode == 0:
        return None
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {r.returncode}"


def gl_backend() -> str:
    """The OpenGL backend for offscreen rendering: MUJOCO_GL if set, else the first of egl, osmesa that works."""
    global _chosen
    if _chosen is not None:
        return _chosen
    env = os.environ.get("MUJOCO_GL", "").strip().lower()
    if env:
        _chosen = env
        return env
    errors = []
    for b in _BACKENDS:
        err = _probe(b)
        if err is None:
            os.environ["MUJOCO_GL"] = b
            _chosen = b
            return b
        errors.append(f"{b}: {err}")
    raise RenderBackendError(
        "no offscreen OpenGL backend works (" + "; ".join(errors) + "); install Debian's "
        "libegl1 libgl1-mesa-dri (MUJOCO_GL=egl) or libosmesa6 (MUJOCO_GL=osmesa)"
    )


def _gl_context_class(backend: str):
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    elif backend == "glfw":
        from mujoco.glfw import GLContext
    else:
        raise RenderBackendError(
            f"MUJOCO_GL={backend!r} is not supported for offscreen rendering; use egl, osmesa or glfw"
        )
    return GLContext


class OffscreenCamera:
    """Renders one named camera of a model into fresh `uint8` (H, W, 3) RGB arrays.

    The offscreen buffer is sized to this camera (the model's `offwidth/offheight` are set just before
    the context is made, and each camera has its own context), so no pixels are rendered and read back
    beyond the image itself.
    """

    def __init__(self, model: mujoco.MjModel, camera: str, width: int, height: int):
        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cam_id < 0:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise ValueError(f"no camera {camera!r} in the model (cameras: {', '.join(names)})")
        backend = gl_backend()
        try:
            self._gl = _gl_context_class(backend)(width, height)
            self._gl.make_current()
        except RenderBackendError:
            raise
        except Exception as e:  # noqa: BLE001 - GL errors come in many types; one clear line instead
            raise RenderBackendError(
                f"cannot create a {backend} OpenGL context ({type(e).__name__}: {e}); "
                "unset MUJOCO_GL to auto-detect, or install libegl1/libosmesa6"
            ) from None
        self.model = model
        self.width, self.height = int(width), int(height)
        model.vis.global_.offwidth = self.width
        model.vis.global_.offheight = self.height
        self._ctx = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._ctx)
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        self._opt = mujoco.MjvOption()
        self._pert = mujoco.MjvPerturb()
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._cam.fixedcamid = cam_id
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)
        self.backend = backend
        global _atexit_registered
        _live.add(self)
        if not _atexit_registered:
            atexit.register(_close_all)
            _atexit_registered = True

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """A new (H, W, 3) uint8 RGB image of `data` (never a reused buffer: receivers may hold it)."""
        self._gl.make_current()
        mujoco.mjv_updateScene(
            self.model, data, self._opt, self._pert, self._cam, mujoco.mjtCatBit.mjCAT_ALL, self._scene
        )
        mujoco.mjr_render(self._rect, self._scene, self._ctx)
        out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(out, None, self._rect, self._ctx)
        return np.ascontiguousarray(out[::-1])  # OpenGL rows start at the bottom

    def close(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            self._gl.make_current()
            self._ctx.free()
            self._ctx = None
        if getattr(self, "_gl", None) is not None:
            self._gl.free()
            self._gl = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
