"""Protocol v1 (Positronic's offboard inference protocol, as released in Positronic 0.2.1): the wire format.

Every WebSocket message is one msgpack document. numpy values travel as maps with *binary* keys, exactly
as Positronic's ``utils/serialization.py`` writes them::

    {b"__ndarray__": True, b"data": <raw bytes>, b"dtype": "<f4", b"shape": [240, 320, 3]}
    {b"__npgeneric__": True, b"data": 0.5, b"dtype": "<f8"}

Observations use Positronic's raw input names, so a robotflow client can talk to their OpenPI / GR00T /
LeRobot servers and their clients to ours::

    robot_state.q (7,) rad, robot_state.dq (7,) rad/s, robot_state.ee_pose (7,) [x, y, z, qw, qx, qy, qz],
    grip (float, 0..1), image.<camera> (H, W, 3) uint8, task (str)

A result is a list of actions, each ``{"robot_command": {"type": "cartesian_pos", "pose": (12,)},
"target_grip": float, "timestamp": i / fps}``; ``pose`` is the translation followed by the row-major
rotation matrix (Positronic's ``Transform3D.as_vector(ROTATION_MATRIX)``), and ``timestamp`` is seconds
after the observation the chunk was predicted from.

Decoding is defensive: this module is what a server applies to bytes from the network, so it refuses
object/void/complex dtypes, inconsistent shapes and malformed msgpack with a :class:`ProtocolError`
(one line), never anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from robotflow.geometry import canonical_quat, matrix_to_quat, quat_to_matrix

API_PREFIX = "/api/v1"
MODELS_PATH = f"{API_PREFIX}/models"
SESSION_PATH = f"{API_PREFIX}/session"

# Raw observation keys (Positronic's harness names them so; their codecs read them).
KEY_Q = "robot_state.q"
KEY_DQ = "robot_state.dq"
KEY_EE_POSE = "robot_state.ee_pose"
KEY_GRIP = "grip"
KEY_TASK = "task"
IMAGE_PREFIX = "image."

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
    if name in obj:
        return obj[name]
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


def _unpack_hook(obj: dict) -> Any:
    is_array = b"__ndarray__" in obj or "__ndarray__" in obj
    is_scalar = b"__npgeneric__" in obj or "__npgeneric__" in obj
    if not (is_array or is_scalar):
        return obj
    try:
        dt = _dtype(_field(obj, b"dtype"))
        data = _field(obj, b"data")
        if is_scalar:
            return dt.type(data)
        shape = tuple(int(s) for s in _field(obj, b"shape"))
    except KeyError as e:
        raise ProtocolError(f"numpy value without its {e.args[0]!r} field") from None
    except (TypeError, ValueError, OverflowError) as e:
        raise ProtocolError(f"bad numpy value: {e}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError("ndarray data must be binary")
    if any(s < 0 for s in shape) or int(np.prod(shape, dtype=np.int64)) * dt.itemsize != len(data):
        raise ProtocolError(f"ndarray of shape {list(shape)} {dt} does not match its {len(data)} data bytes")
    return np.frombuffer(data, dtype=dt).reshape(shape)


def pack(obj: Any) -> bytes:
    """Serialise plain data + numpy values to Protocol v1 bytes."""
    return msgpack.packb(obj, default=_pack_default)


def unpack(data: bytes | bytearray | memoryview) -> Any:
    """Parse Protocol v1 bytes. Arrays come back read-only, viewing the message buffer (no copy)."""
    try:
        return msgpack.unpackb(data, object_hook=_unpack_hook, raw=False)
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
    latest: dict[str, dict[str, Any]] = {channels.arm_state: arm, channels.gripper_state: {"width": float(grip)}}
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


def actions_to_wire(decoded: Sequence[Mapping[str, Any]], fps: float) -> list[dict[str, Any]]:
    """Decoded robotflow actions (``{"ee_pose", "width"}``, one per control period) -> a Protocol v1 result."""
    if not decoded:
        return []
    poses = np.stack([np.asarray(a["ee_pose"], dtype=np.float64) for a in decoded])
    wire = np.concatenate([poses[:, :3], quat_to_matrix(poses[:, 3:7]).reshape(-1, 9)], axis=1)  # one batch
    return [
        {
            "robot_command": {"type": "cartesian_pos", "pose": wire[i]},
            "target_grip": float(a["width"]),
            "timestamp": i / fps,
        }
        for i, a in enumerate(decoded)
    ]


def actions_from_wire(result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Protocol v1 result -> (ee_poses (N, 7), grips (N,), timestamps (N,) seconds after the observation).

    Only ``cartesian_pos`` commands map onto robotflow's ``ee_target``; any other command type is refused.
    """
    if isinstance(result, Mapping):
        result = [result]  # a server of a single-step policy may answer with one action
    if not isinstance(result, list) or not result:
        raise ProtocolError("a result must be a non-empty list of actions")
    poses, grips, stamps = [], [], []
    for i, action in enumerate(result):
        if not isinstance(action, Mapping) or "robot_command" not in action or "target_grip" not in action:
            raise ProtocolError(f"action {i} needs 'robot_command' and 'target_grip'")
        cmd = action["robot_command"]
        kind = cmd.get("type") if isinstance(cmd, Mapping) else None
        if kind != "cartesian_pos":
            raise ProtocolError(
                f"action {i}: command type {kind!r} is not supported (policy.remote drives EE targets: cartesian_pos)"
            )
        poses.append(cmd.get("pose"))
        grips.append(action["target_grip"])
        stamps.append(action.get("timestamp", 0.0))
    try:
        pose = np.asarray(poses, dtype=np.float64).reshape(len(result), -1)
        grip = np.asarray(grips, dtype=np.float64).reshape(len(result))
        stamp = np.asarray(stamps, dtype=np.float64).reshape(len(result))
    except (TypeError, ValueError):
        raise ProtocolError("actions need numeric poses (12 values each), target_grip and timestamp") from None
    if pose.shape[1] != 12:
        raise ProtocolError(f"cartesian_pos pose must have 12 values (xyz + 3x3 matrix), got {pose.shape[1]}")
    if not (np.isfinite(pose).all() and np.isfinite(grip).all() and np.isfinite(stamp).all()):
        raise ProtocolError("actions have non-finite values")
    quats = canonical_quat(matrix_to_quat(pose[:, 3:].reshape(-1, 3, 3)))
    return np.concatenate([pose[:, :3], quats], axis=1), grip, stamp
