"""Positronic's offboard inference protocol, versions 1 to 3 (Positronic 0.2.1 to 0.4.1): the wire format.

Version 1 (Positronic 0.2.1) sends a bare observation and gets ``{"result": [...]}``. Versions 2 and 3
(Positronic 0.4.x; the server declares one as ``protocol_version`` in its ready message, beside a
``session_id``) wrap each request as ``{"session_id", "observation"}``, end a session with
``{"session_id", "end_session": True}`` (the server answers the same map), and answer with a ``timing``
block beside the result. Version 2 serialises robot commands in a ``__cmd__`` envelope; version 3 is
plain data. Images may travel JPEG-compressed (``__jpeg__``) when the server's meta sets
``compress_images``.

Every WebSocket message is one msgpack document. numpy values travel as maps with *binary* keys, exactly
as Positronic's ``utils/serialization.py`` writes them::

    {b"__ndarray__": True, b"data": <raw bytes>, b"dtype": "<f4", b"shape": [240, 320, 3]}
    {b"__npgeneric__": True, b"data": 0.5, b"dtype": "<f8"}

Observations use Positronic's raw input names, so a robotflow client can talk to their OpenPI / GR00T /
LeRobot servers and their clients to ours::

    robot_state.q (7,) rad, robot_state.dq (7,) rad/s, robot_state.ee_pose (7,) [x, y, z, qw, qx, qy, qz],
    grip (float, 0 open .. 1 closed), image.<camera> (H, W, 3) uint8, task (str)

A result is a list of actions, each ``{"robot_command": {"type": "cartesian_pos", "pose": (12,)},
"target_grip": float, "timestamp": i / fps}``; ``pose`` is the translation followed by the row-major
rotation matrix (Positronic's ``Transform3D.as_vector(ROTATION_MATRIX)``), and ``timestamp`` is seconds
after the observation the chunk was predicted from.

Decoding is defensive: this module is what a server applies to bytes from the network, so it refuses
object/void/complex dtypes, inconsistent shapes and malformed msgpack with a :class:`ProtocolError`
(one line), never anything else.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import msgpack
import numpy as np

from robotflow.geometry import canonical_quat, matrix_to_quat, quat_to_matrix

API_PREFIX = "/api/v1"
MODELS_PATH = f"{API_PREFIX}/models"
SESSION_PATH = f"{API_PREFIX}/session"
KEEPALIVE_PATH = f"{API_PREFIX}/keepalive"
ALIVE_SECONDS = "alive_seconds"

# Protocol versions (Positronic's ProtocolVersion). A server declares one in its ready message; a client
# that knows it follows it. robotflow serve declares V2, what Positronic 0.4.1's own PolicyServer declares,
# and still answers a V1 client (one that ignores the field and sends bare observations).
V1, V2, V3 = 1, 2, 3
SUPPORTED_VERSIONS = (V1, V2, V3)
SERVER_VERSION = V2

# Message fields of versions 2 and 3.
PROTOCOL_VERSION = "protocol_version"
SESSION_ID = "session_id"
OBSERVATION = "observation"
END_SESSION = "end_session"
TIMING = "timing"
# The server's time on one request, in ms: served brackets the others (decode, queued, infer).
TIMING_SERVED, TIMING_DECODE, TIMING_QUEUED, TIMING_INFER = "served_ms", "decode_ms", "queued_ms", "infer_ms"
# Ready meta: the client processor stack Positronic's RemotePolicy runs (it refuses a server without one),
# and whether clients should send JPEG images.
LOCAL_STACK = "local_stack"
COMPRESS_IMAGES = "compress_images"
JPEG_QUALITY = 90

# Raw observation keys (Positronic's harness names them so; their codecs read them).
KEY_Q = "robot_state.q"
KEY_DQ = "robot_state.dq"
KEY_EE_POSE = "robot_state.ee_pose"
KEY_GRIP = "grip"


def grip_to_wire(width: float) -> float:
    """robotflow's gripper width (0 closed .. 1 open) -> Positronic's grip and target_grip (0 open .. 1 closed)."""
    return 1.0 - float(width)


def width_from_wire(grip: float) -> float:
    """Positronic's grip or target_grip (0 open .. 1 closed) -> robotflow's gripper width (0 closed .. 1 open)."""
    return 1.0 - float(grip)


KEY_TASK = "task"
IMAGE_PREFIX = "image."
# Keys Positronic 0.4's clients add and its servers read: the arm's status, the control clock's and the wall
# clock's time of the observation.
KEY_STATUS = "robot_state.status"
KEY_OBS_TIME_NS = "obs_time_ns"
KEY_WALL_TIME_NS = "wall_time_ns"

# Positronic's codecs read two cameras, `image.wrist` and `image.exterior`; robotflow graphs call the
# second one `front`. Servers accept either name for it.
POSITRONIC_CAMERA_ALIASES: dict[str, str] = {"front": "exterior"}

# Close code of a session whose setup failed (unknown model, load error, refused auth): policy violation.
CLOSE_POLICY_VIOLATION = 1008

_NUMERIC_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: what a robot observation carries


class ProtocolError(ValueError):
    """Bytes or values that are not a valid Protocol v1 message; the text is one line for the peer."""


# ---- msgpack with numpy ---------------------------------------------------------------------------


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.kind not in _NUMERIC_KINDS:
            raise ProtocolError(f"unsupported dtype {obj.dtype} on the wire (numeric arrays only)")
        if isinstance(obj, np.ndarray):
            arr = np.ascontiguousarray(obj)
            return {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": arr.shape}
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise ProtocolError(f"cannot send a {type(obj).__name__} (plain data and numeric numpy values only)")


def _field(obj: dict, name: bytes) -> Any:
    # Positronic writes binary keys; a client in another language may well write text keys.
    try:
        return obj[name]
    except KeyError:
        return obj[name.decode()]


def _dtype(text: Any) -> np.dtype:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        dt = np.dtype(str(text))
    except TypeError:
        raise ProtocolError(f"unknown dtype {text!r}") from None
    if dt.kind not in _NUMERIC_KINDS or dt.hasobject:
        raise ProtocolError(f"unsupported dtype {text!r} (numeric arrays only)")
    return dt


def _has(obj: dict, name: bytes) -> bool:
    return name in obj or name.decode() in obj


# A JPEG value holds at most this many frames, each of at most this many pixels, and the frames of one
# message decode to at most `max_jpeg_bytes` in all (`unpack`; the server passes four times its message
# limit, what the transport would accept as raw arrays). Sizes are read from each frame's header before
# anything is decoded: a few hundred bytes declaring a 20000x20000 image cost neither seconds nor gigabytes.
MAX_JPEG_FRAMES = 64
MAX_JPEG_PIXELS = 4096 * 4096
MAX_JPEG_DECODED_BYTES = 64 * 1024 * 1024
# Start-of-frame markers (baseline, progressive, lossless...; not DHT C4, JPG C8, DAC CC): they carry the size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(buf: bytes | bytearray) -> tuple[int, int] | None:
    """(height, width) a JPEG declares in its frame header, read without decoding it; None for anything
    that is not a JPEG with a frame header before its first scan."""
    n = len(buf)
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:  # SOI: cv2 would decode a PNG or TIFF as well
        return None
    i = 2
    while i + 4 <= n:
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(buf[i + 2 : i + 4], "big")
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                return None
            return int.from_bytes(buf[i + 5 : i + 7], "big"), int.from_bytes(buf[i + 7 : i + 9], "big")
        if marker == 0xDA or length < 2:  # a scan before any frame header, or a broken segment
            return None
        i += 2 + length
    return None


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> dict[bytes, Any]:
    """An (H, W, 3) uint8 RGB image as Positronic's ``__jpeg__`` map (one frame, ``ndim`` 3)."""
    ok, buf = cv2.imencode(
        ".jpg",
        cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
        [
            cv2.IMWRITE_JPEG_QUALITY,
            int(quality),
        ],
    )
    if not ok:
        raise ProtocolError("JPEG encoding failed")
    return {b"__jpeg__": True, b"frames": [buf.tobytes()], b"ndim": 3}


def _decode_jpeg(obj: dict, budget: list[int]) -> np.ndarray:
    """A ``__jpeg__`` value -> its frames; `budget` holds the bytes the message's frames may still decode to."""
    try:
        frames = _field(obj, b"frames")
    except KeyError:
        raise ProtocolError("a __jpeg__ value needs its 'frames'") from None
    if not isinstance(frames, list) or not 1 <= len(frames) <= MAX_JPEG_FRAMES:
        raise ProtocolError(f"a __jpeg__ value needs 1..{MAX_JPEG_FRAMES} frames")
    images = []
    for buf in frames:
        if not isinstance(buf, (bytes, bytearray)):
            raise ProtocolError("JPEG frames must be binary")
        size = jpeg_size(buf)
        if size is None or not 0 < size[0] * size[1] <= MAX_JPEG_PIXELS:
            raise ProtocolError("a JPEG frame does not declare an image of at most 4096x4096")
        budget[0] -= size[0] * size[1] * 3
        if budget[0] < 0:
            raise ProtocolError("the JPEG frames of this message decode to more than the server accepts")
        img = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
        if img is None or img.shape[:2] != size:
            raise ProtocolError("a JPEG frame does not decode to the RGB image its header declares")
        images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if len({im.shape for im in images}) != 1:
        raise ProtocolError("the frames of one JPEG value differ in size")
    stack = np.stack(images)
    ndim = obj.get(b"ndim", obj.get("ndim", 3 if len(images) == 1 else 4))
    if _has(obj, b"shape"):
        try:
            return stack.reshape(tuple(int(s) for s in _field(obj, b"shape")))
        except (TypeError, ValueError):
            raise ProtocolError("a __jpeg__ shape does not match its frames") from None
    return stack[0] if ndim == 3 and len(images) == 1 else stack


# The marker keys of Positronic's typed values, binary as Positronic writes them and as text.
_MARKERS = frozenset((b"__cmd__", "__cmd__", b"__jpeg__", "__jpeg__", b"__ndarray__", "__ndarray__"))
_MARKERS |= {b"__npgeneric__", "__npgeneric__"}


@functools.lru_cache(maxsize=64)
def _dtype_cached(text: Any) -> np.dtype:
    return _dtype(text)


# The dtype texts numpy writes for the numeric dtypes (`dtype.str`), for the short path of `_unpack_hook`.
_KNOWN_DTYPES = {np.dtype(c).newbyteorder(o).str: np.dtype(c).newbyteorder(o) for c in "?bBhHiIlLqQefd" for o in "<>"}


def _unpack_hook(jpeg_budget: list[int], obj: dict) -> Any:
    # Called for every map of a message (three per row of a 100-row result): plain maps leave at once, and
    # arrays as Positronic writes them (binary keys, a numeric dtype text, int dims) take the short path.
    if obj.keys().isdisjoint(_MARKERS):
        return obj
    if b"__ndarray__" in obj:
        data, dt, shape = obj.get(b"data"), _KNOWN_DTYPES.get(obj.get(b"dtype")), obj.get(b"shape")
        if dt is not None and type(data) is bytes and type(shape) is list and all(type(n) is int for n in shape):
            if min(shape, default=0) < 0 or math.prod(shape) * dt.itemsize != len(data):
                raise ProtocolError(f"ndarray of shape {shape} {dt} does not match its {len(data)} data bytes")
            return np.frombuffer(data, dtype=dt).reshape(shape)
    if _has(obj, b"__cmd__"):  # Positronic's v2 envelope of a robot command: the command's own map
        return _field(obj, b"__cmd__")
    if _has(obj, b"__jpeg__"):
        return _decode_jpeg(obj, jpeg_budget)
    try:
        dtype_text, data = _field(obj, b"dtype"), _field(obj, b"data")
        dt = _dtype_cached(dtype_text) if isinstance(dtype_text, (str, bytes)) else _dtype(dtype_text)
        if not _has(obj, b"__ndarray__"):  # __npgeneric__
            return dt.type(data)
        shape = tuple(map(int, _field(obj, b"shape")))
    except KeyError as e:
        raise ProtocolError(f"numpy value without its {e.args[0]!r} field") from None
    except (TypeError, ValueError, OverflowError) as e:
        raise ProtocolError(f"bad numpy value: {e}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError("ndarray data must be binary")
    if min(shape, default=0) < 0 or math.prod(shape) * dt.itemsize != len(data):
        raise ProtocolError(f"ndarray of shape {list(shape)} {dt} does not match its {len(data)} data bytes")
    return np.frombuffer(data, dtype=dt).reshape(shape)


def pack(obj: Any) -> bytes:
    """Serialise plain data + numpy values to Protocol v1 bytes."""
    return msgpack.packb(obj, default=_pack_default)


def unpack(data: bytes | bytearray | memoryview, max_jpeg_bytes: int = MAX_JPEG_DECODED_BYTES) -> Any:
    """Parse Protocol v1 bytes. Arrays come back read-only, viewing the message buffer (no copy); JPEG
    frames are decoded, at most `max_jpeg_bytes` of pixels in all."""
    try:
        return msgpack.unpackb(data, object_hook=functools.partial(_unpack_hook, [max_jpeg_bytes]), raw=False)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises a zoo of types (ExtraData, FormatError, StackError, ValueError...)
        detail = (str(e).splitlines() or [""])[0][:120]
        raise ProtocolError(
            f"malformed msgpack message ({type(e).__name__}{': ' + detail if detail else ''})"
        ) from None


# ---- observations ---------------------------------------------------------------------------------


def camera_wire_key(camera: str, overrides: Mapping[str, str] | None = None) -> str:
    """Wire key of a robotflow camera: ``image.<camera>`` unless ``overrides`` renames it."""
    if overrides and camera in overrides:
        return overrides[camera]
    return IMAGE_PREFIX + camera


def fit_size(shape: Sequence[int], target_wh: Sequence[int] | None) -> tuple[int, int] | None:
    """(height, width) an image of ``shape`` is shrunk to so it fits ``target_wh`` = (width, height), keeping
    its aspect (Positronic's RemotePolicy rule: never enlarge); None when no resize is needed."""
    if not target_wh:
        return None
    tw, th = int(target_wh[0]), int(target_wh[1])
    h, w = int(shape[0]), int(shape[1])
    if tw <= 0 or th <= 0:
        return None
    scale = min(1.0, tw / w, th / h)
    size = (max(1, int(h * scale)), max(1, int(w * scale)))
    return None if size == (h, w) else size


def image_size_for(meta: Mapping[str, Any], wire_key: str) -> tuple[int, int] | None:
    """The (width, height) a server asks for ``wire_key`` in its ``image_sizes`` meta, if any."""
    sizes = meta.get("image_sizes")
    if isinstance(sizes, Mapping):
        size = sizes.get(wire_key)
        return (int(size[0]), int(size[1])) if size is not None else None
    if isinstance(sizes, (list, tuple)) and len(sizes) == 2:
        return int(sizes[0]), int(sizes[1])
    return None


def _array(value: Any, key: str, size: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ProtocolError(f"observation {key!r} must be numeric") from None
    if size is not None and arr.shape[0] != size:
        raise ProtocolError(f"observation {key!r} must have {size} values, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ProtocolError(f"observation {key!r} has non-finite values")
    return arr


def channels_from_observation(obs: Any, codec: Any) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Server side: a Protocol v1 observation -> the ``{channel: fields}`` mapping ``codec.encode_live`` reads
    (keyed by the codec's own channel names), and the task text. Only what the codec encodes is required;
    missing or malformed keys raise :class:`ProtocolError` naming the key."""
    if codec.layout.objects:
        raise ProtocolError(f"codec {codec.name!r} reads simulator object poses, which Protocol v1 does not carry")
    parts = set(codec.layout.state)
    needs_ee, needs_joints = bool(parts & {"ee_pose", "ee_rot6d"}), "joints" in parts
    channels = codec.params.channels
    if not isinstance(obs, Mapping):
        raise ProtocolError(f"an observation must be a map, got {type(obs).__name__}")

    def need(key: str) -> Any:
        if key not in obs:
            raise ProtocolError(f"observation has no {key!r}; keys sent: {', '.join(sorted(map(str, obs)))}")
        return obs[key]

    arm: dict[str, Any] = {}
    if needs_ee:
        arm["ee_pose"] = _array(need(KEY_EE_POSE), KEY_EE_POSE, 7)
    if needs_joints:
        arm["joint_pos"] = _array(need(KEY_Q), KEY_Q, 7)
    grip = _array(need(KEY_GRIP), KEY_GRIP, 1)[0]
    latest: dict[str, dict[str, Any]] = {
        channels.arm_state: arm,
        channels.gripper_state: {"width": width_from_wire(grip)},
    }
    for cam, channel in codec.params.cameras.items():
        keys = [IMAGE_PREFIX + cam]
        if cam in POSITRONIC_CAMERA_ALIASES:
            keys.append(IMAGE_PREFIX + POSITRONIC_CAMERA_ALIASES[cam])
        key = next((k for k in keys if k in obs), None)
        if key is None:
            raise ProtocolError(f"observation has no {' or '.join(repr(k) for k in keys)} image")
        img = obs[key]
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            desc = f"{img.shape} {img.dtype}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ProtocolError(f"observation {key!r} must be an (H, W, 3) uint8 array, got {desc}")
        latest[channel] = {"image": img}
    task = obs.get(KEY_TASK)
    if task is not None and not isinstance(task, str):
        raise ProtocolError(f"observation 'task' must be text, got {type(task).__name__}")
    return latest, task


# ---- actions --------------------------------------------------------------------------------------


def pose_to_wire(ee_pose: np.ndarray) -> np.ndarray:
    """[x, y, z, qw, qx, qy, qz] -> Positronic's cartesian_pos pose: translation + row-major rotation matrix."""
    p = np.asarray(ee_pose, dtype=np.float64)
    return np.concatenate([p[:3], quat_to_matrix(p[3:7]).reshape(9)])


def pose_from_wire(pose: Any) -> np.ndarray:
    """Positronic's cartesian_pos pose (translation + row-major rotation matrix) -> [x, y, z, qw, qx, qy, qz]."""
    p = _array(pose, "robot_command.pose")
    if p.shape[0] != 12:
        raise ProtocolError(f"cartesian_pos pose must have 12 values (xyz + 3x3 matrix), got {p.shape[0]}")
    return np.concatenate([p[:3], canonical_quat(matrix_to_quat(p[3:].reshape(3, 3)))])


def actions_to_wire(
    poses: np.ndarray, widths: np.ndarray, fps: float, valid_steps: int | None = None, stamped: bool = True
) -> list[dict[str, Any]]:
    """Decoded robotflow actions (``Codec.decode_chunk``: (N, 7) EE poses, (N,) gripper widths, one per
    control period) -> a result.

    valid_steps: when set, the list ends with the command-less validity marker ``{"timestamp": K / fps}``:
    no action at or past it should run (the policy's ``n_action_steps``).
    stamped: rows carry ``timestamp`` (version 1). Version 2 rows carry none: the client's declared
    ``chunked_schedule`` spaces them at the server's rate, and would take a ``timestamp`` for a command.
    """
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 7)
    if not len(poses):
        return []
    # One batch for the whole chunk: per row, numpy's call overhead costs ms on a 100-step chunk.
    wire = np.concatenate([poses[:, :3], quat_to_matrix(poses[:, 3:7]).reshape(-1, 9)], axis=1)
    grips = (1.0 - np.asarray(widths, dtype=np.float64).reshape(-1)).tolist()  # grip_to_wire, batched
    if stamped:
        rows = [
            {"robot_command": {"type": "cartesian_pos", "pose": pose}, "target_grip": grip, "timestamp": i / fps}
            for i, (pose, grip) in enumerate(zip(wire, grips, strict=True))
        ]
    else:
        rows = [
            {"robot_command": {"type": "cartesian_pos", "pose": pose}, "target_grip": grip}
            for pose, grip in zip(wire, grips, strict=True)
        ]
    if valid_steps is not None:
        rows.append({"timestamp": min(int(valid_steps), len(rows)) / fps})
    return rows


# Command types policy.remote executes, and the robotflow output each drives.
EE_TARGET, JOINT_TARGET = 0, 1
COMMAND_KINDS = {"cartesian_pos": EE_TARGET, "joint_pos": JOINT_TARGET}


@dataclass
class WireChunk:
    """A result as robotflow executes it: one row per commanded action.

    kinds: EE_TARGET (target = [x, y, z, qw, qx, qy, qz]) or JOINT_TARGET (target = 7 joint positions).
    grips: robotflow gripper widths (0 closed .. 1 open), from the wire's target_grip (0 open .. 1 closed).
    stamps: seconds after the observation (``i / fps`` where the server sends none).
    valid_until: the validity marker's time, if the result ends with one: no action at or past it runs.
    """

    kinds: np.ndarray
    targets: np.ndarray
    grips: np.ndarray
    stamps: np.ndarray
    valid_until: float | None = None

    def __len__(self) -> int:
        return len(self.kinds)


def _command_kind(cmd: Any, i: int) -> int:
    kind = cmd.get("type") if isinstance(cmd, Mapping) else None
    if kind not in COMMAND_KINDS:
        raise ProtocolError(
            f"action {i}: command type {kind!r} cannot be executed (robotflow arms take cartesian_pos and joint_pos)"
        )
    mode = cmd.get("mode")
    if mode is not None:
        # Our arms run position control at their own gains: a mode asking for exactly that is honoured,
        # any other control law (impedance, explicit stiffness) is refused rather than silently ignored.
        if not (isinstance(mode, Mapping) and mode.get("type") == "position_control" and mode.get("stiffness") is None):
            name = mode.get("type") if isinstance(mode, Mapping) else mode
            raise ProtocolError(
                f"action {i}: control mode {name!r} is not supported (robotflow arms: position control)"
            )
    return COMMAND_KINDS[kind]


def _rows(values: list[Any], rows: list[int], key: str, size: int) -> np.ndarray:
    """Per-row wire values -> a finite (len(values), size) float64 array, in one conversion; a row that does
    not fit raises :class:`ProtocolError` naming its action and key (found only when the batch fails)."""
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(len(values), size)
        if np.isfinite(arr).all():
            return arr
    except (TypeError, ValueError):
        pass  # mixed forms (a scalar here, a 1-element array there) or a bad row: row by row
    out = np.empty((len(values), size))
    for j, (i, v) in enumerate(zip(rows, values, strict=True)):
        try:
            out[j] = _array(v, key, size)
        except ProtocolError as e:
            raise ProtocolError(f"action {i}: {e}") from None
    return out


# How far from orthonormal a commanded rotation may be: float32 rounding on the server is ~1e-7.
ROTATION_TOLERANCE = 1e-3


def _rotations(mats: np.ndarray, rows: list[int]) -> np.ndarray:
    """(N, 3, 3) commanded rotations, refused unless each is a proper rotation matrix (R R^T = I, det +1):
    anything else has no quaternion, and a nonsense orientation must not reach the arm."""
    err = np.abs(mats @ np.swapaxes(mats, 1, 2) - np.eye(3)).max(axis=(1, 2))
    bad = (err > ROTATION_TOLERANCE) | (np.linalg.det(mats) < 0.0)
    if bad.any():
        raise ProtocolError(f"action {rows[int(np.argmax(bad))]}: robot_command.pose does not hold a rotation matrix")
    return mats


def actions_from_wire(result: Any, fps: float | None = None) -> WireChunk:
    """A result -> a :class:`WireChunk`.

    Rows are ``{"robot_command", "target_grip", "timestamp"?}``; a row of only ``timestamp`` is the validity
    marker (rows after it are dropped); a row with no command (Positronic's stub answers ``[{}]``) is
    skipped. Rows without a timestamp are stamped ``i / fps`` (versions 2 and 3 send none). Command types
    other than cartesian_pos and joint_pos, and control modes other than plain position control, are refused.
    Non-finite or ill-shaped values are refused naming the action. One pass over the rows gathers the raw
    values; they are checked and converted as arrays (a client reads 100-row chunks).
    """
    if isinstance(result, Mapping):
        result = [result]  # a server of a single-step policy may answer with one action
    if not isinstance(result, list):
        raise ProtocolError("a result must be a list of actions")
    kinds: list[int] = []
    rows: list[int] = []  # the index in `result` of each commanded action, for error messages
    targets: list[Any] = []
    grips: list[Any] = []
    stamps: list[Any] = []
    valid_until = None
    for i, action in enumerate(result):
        if not isinstance(action, Mapping):
            raise ProtocolError(f"action {i} must be a map")
        cmd = action.get("robot_command")
        if cmd is None:
            if len(action) == 1 and "timestamp" in action:  # the validity marker
                valid_until = float(_array(action["timestamp"], "timestamp", 1)[0])
                break
            continue
        if "target_grip" not in action:
            raise ProtocolError(f"action {i} needs 'target_grip' beside its 'robot_command'")
        kind = _command_kind(cmd, i)
        kinds.append(kind)
        rows.append(i)
        targets.append(cmd.get("pose") if kind == EE_TARGET else cmd.get("positions"))
        grips.append(action["target_grip"])
        if "timestamp" in action:
            stamps.append(action["timestamp"])
        elif fps:
            stamps.append(i / fps)
        else:
            raise ProtocolError(f"action {i} has no timestamp and the server declares no action_fps")
    if not kinds:
        empty = np.zeros((0, 7))
        return WireChunk(np.zeros(0, dtype=int), empty, np.zeros(0), np.zeros(0), valid_until)
    kind_arr = np.asarray(kinds, dtype=int)
    out = np.zeros((len(kinds), 7))
    ee = kind_arr == EE_TARGET
    if ee.any():
        sel = np.flatnonzero(ee).tolist()
        poses = _rows([targets[j] for j in sel], [rows[j] for j in sel], "robot_command.pose", 12)
        quats = canonical_quat(matrix_to_quat(_rotations(poses[:, 3:].reshape(-1, 3, 3), [rows[j] for j in sel])))
        out[ee] = np.concatenate([poses[:, :3], quats], axis=1)
    if not ee.all():
        sel = np.flatnonzero(~ee).tolist()
        out[~ee] = _rows([targets[j] for j in sel], [rows[j] for j in sel], "robot_command.positions", 7)
    widths = 1.0 - _rows(grips, rows, "target_grip", 1)[:, 0]  # width_from_wire, batched
    return WireChunk(kind_arr, out, widths, _rows(stamps, rows, "timestamp", 1)[:, 0], valid_until)


# ---- requests (server side) ------------------------------------------------------------------------


@dataclass
class Request:
    """One message of a session, as the server reads it.

    version: V1 for a bare observation, V2 for one in a ``{session_id, observation}`` envelope.
    """

    version: int
    observation: Any = None
    end_session: bool = False

    @property
    def reads_marker(self) -> bool:
        """Whether the client drops the validity marker: a version 1 request stamped with ``wall_time_ns``
        comes from Positronic 0.4's version 1 path (its ChunkFromV1Answer drops the marker), or from
        robotflow. Positronic 0.2.1 stamps nothing and reads a command in every row."""
        return self.version == V1 and isinstance(self.observation, Mapping) and KEY_WALL_TIME_NS in self.observation


def parse_request(msg: Any, session_id: str) -> Request:
    """A decoded client message -> :class:`Request`; a wrong session id raises :class:`ProtocolError`."""
    if isinstance(msg, Mapping) and SESSION_ID in msg:
        if msg[SESSION_ID] != session_id:
            raise ProtocolError("the session id does not belong to this connection")
        if msg.get(END_SESSION) is True:
            return Request(V2, end_session=True)
        if OBSERVATION not in msg:
            raise ProtocolError("a request needs its 'observation' beside the 'session_id'")
        return Request(V2, msg[OBSERVATION])
    return Request(V1, msg)
