"""Codecs: the contract between recorded channels, LeRobot datasets, training and the policy node.

A codec has three sides, all derived from one small layout table (``LAYOUTS``):

- observation encoder: channel messages (recorded, or the latest live ones) -> policy features
  ``observation.state`` (float32), ``observation.images.<camera>`` (uint8 HWC, resized), for the
  privileged simulation codecs (``*_objects``) ``observation.environment_state`` (the task's object
  poses from ``task/objects``), and the task text;
- training labels: which recorded signal becomes ``action`` (the commanded target, or for the ``_traj``
  variants the trajectory the arm actually followed);
- action decoder: policy action vector -> ``{"ee_pose": (7,), "width": float}`` for the arm and gripper.

Keeping the three sides in one object is what lets ``convert``, ``train`` and the policy node agree: the
codec's :meth:`Codec.spec` is stored with the dataset and the checkpoint (``robotflow.codecs.spec``), and
``codec_from_spec`` rebuilds the identical codec at deployment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from robotflow.geometry import canonical_quat, continuous_quats, quat_to_rot6d, rot6d_to_quat

__all__ = [
    "CODEC_SPEC_FORMAT",
    "DEFAULT_CAMERAS",
    "DEFAULT_IMAGE_SIZE",
    "ARM_STATE",
    "ARM_COMMAND",
    "GRIPPER_STATE",
    "GRIPPER_COMMAND",
    "TASK_CHANNEL",
    "OBJECTS_CHANNEL",
    "CodecError",
    "CodecLayout",
    "CodecParams",
    "Codec",
    "LAYOUTS",
    "ALIASES",
    "available_codecs",
    "canonical_name",
    "get_codec",
    "CodecChannels",
    "PRIVILEGED_CHANNELS",
    "check_camera_only",
]

CODEC_SPEC_FORMAT = "robotflow.codec/1"

# Channel names from docs/contracts.md.
ARM_STATE = "arm/state"
ARM_COMMAND = "arm/command"
GRIPPER_STATE = "gripper/state"
GRIPPER_COMMAND = "gripper/command"
TASK_CHANNEL = "task/episode"
# Privileged object state, published by the simulated task only: codecs that read it cannot run on hardware.
OBJECTS_CHANNEL = "task/objects"
# Channels a real robot has no counterpart of: a camera-only codec may read none of them, under any role.
PRIVILEGED_CHANNELS = frozenset({OBJECTS_CHANNEL})
OBJECT_POSE_NAMES = ["x", "y", "z", "qw", "qx", "qy", "qz"]
RELATIVE_OBJECT_POSE_NAMES = ["dx", "dy", "dz", "qw", "qx", "qy", "qz"]  # position: object minus EE

DEFAULT_CAMERAS: dict[str, str] = {"wrist": "wrist_camera/frame", "front": "front_camera/frame"}
# (height, width). 240x320 keeps the 4:3 aspect of every camera we drive (sim renders 320x240 natively,
# RealSense/OpenCV 640x480 downsample by exactly 2), and ACT's resnet18 on two 240x320 images runs a
# chunk in about 140 ms on our 2-core CPUs; 480x480 (the upstream default) is 3x the pixels, stretches
# the image, and makes both video encoding at conversion and the backbone at inference ~3x slower.
DEFAULT_IMAGE_SIZE: tuple[int, int] = (240, 320)
GRIP_THRESHOLD = 0.5
# Where every episode's quaternion chain starts: the sign of its first quaternion is the one nearer this
# reference. The source's `w >= 0` cannot decide it for a top-down gripper: the Panda's home orientation is
# a half turn, w = +-6e-7, so solver noise picked the hemisphere, and a dataset whose grid started a few
# steps later than the live policy's first tick held the opposite sign of every quaternion (a policy then
# sees inputs it was never trained on). The reference is at least 60 degrees from a half turn about x, y,
# z or the x+y diagonal (top-down grippers) and from the identity, so those start poses are never ambiguous.
QUAT_CHAIN_REFERENCE = np.array([0.5, 0.5, 0.5, 0.5])

# Element names for each state/action part, written as LeRobot feature ``names``.
_PART_NAMES: dict[str, list[str]] = {
    "ee_pose": ["ee.x", "ee.y", "ee.z", "ee.qw", "ee.qx", "ee.qy", "ee.qz"],
    "ee_rot6d": ["ee.x", "ee.y", "ee.z", "ee.r00", "ee.r10", "ee.r20", "ee.r01", "ee.r11", "ee.r21"],
    "grip": ["grip"],
    "joints": [f"joint_{i}" for i in range(7)],
}


class CodecError(ValueError):
    """Bad codec name/params, or an input the codec cannot encode; the message is one line."""


def check_camera_only(name: str, features: Mapping[str, Any], channels: Mapping[str, str]) -> None:
    """Refuse a privileged input to the camera-only codec `name`: a feature other than cameras, the robot's state and
    the action, or a read channel (`role -> channel`) that only the simulator publishes (`task/objects`)."""
    for key in features:
        if key not in CAMERA_ONLY_FEATURES and not key.startswith(CAMERA_FEATURE_PREFIX):
            raise CodecError(
                f"codec '{name}' is camera-only and cannot have feature '{key}' (privileged state); "
                "use an *_objects codec for simulator state"
            )
    for role, channel in channels.items():
        if channel in PRIVILEGED_CHANNELS:
            raise CodecError(
                f"codec '{name}' is camera-only and cannot read '{channel}' ({role}): only the simulator publishes it"
            )


class MessageLike(Protocol):
    """What the encoder needs from a runtime ``Message``: field access by name."""

    def __getitem__(self, name: str) -> Any: ...


@dataclass(frozen=True)
class CodecLayout:
    """What one named codec puts in the state, which rotation the action uses, and its label source."""

    state: tuple[str, ...]  # parts from _PART_NAMES, in order
    rotation: str  # "quat" (7-d pose) or "rot6d" (9-d pose) for the EE part of state and action
    labels: str  # "command" (arm/command + gripper/command) or "trajectory" (next observed state)
    description: str
    # Privileged low-dim setting (robomimic's "low_dim"): object poses from task/objects become
    # observation.environment_state. Such codecs have no cameras unless asked for (`cameras=`).
    objects: bool = False
    # Positions relative to the EE: object positions are offsets from the EE position of the same frame,
    # and the policy predicts each chunk's target positions as offsets from the EE position it observed
    # (the dataset keeps absolute actions; `robotflow train` subtracts per chunk, the policy nodes add the
    # observed position back). "Put it 2 cm past the green cube" is then the same numbers anywhere on the
    # table, so a policy need not learn that mapping separately for every object placement.
    relative: bool = False
    # The deployable setting: cameras and the robot's own state only. `Codec` refuses such a codec any
    # privileged input (an environment state, or a channel only the simulator publishes; `check_camera_only`),
    # so a policy trained on it can run on a real robot, which has cameras and no object poses.
    camera_only: bool = False


LAYOUTS: dict[str, CodecLayout] = {
    "eepose_absolute": CodecLayout(("ee_pose", "grip"), "quat", "command", "EE pose + grip -> absolute EE pose + grip"),
    "joints_absolute": CodecLayout(("joints", "grip"), "quat", "command", "joints + grip -> absolute EE pose + grip"),
    "ee_joints": CodecLayout(
        ("ee_pose", "grip", "joints"), "quat", "command", "EE pose + grip + joints -> absolute EE pose + grip"
    ),
    "ee_traj": CodecLayout(
        ("ee_pose", "grip"), "quat", "trajectory", "EE pose + grip -> next observed EE pose + binarised grip"
    ),
    "joints_traj": CodecLayout(
        ("joints", "grip"), "quat", "trajectory", "joints + grip -> next observed EE pose + binarised grip"
    ),
    "ee_joints_traj": CodecLayout(
        ("ee_pose", "grip", "joints"),
        "quat",
        "trajectory",
        "EE pose + grip + joints -> next observed EE pose + binarised grip",
    ),
    "ee_rot6d_joints": CodecLayout(
        ("ee_rot6d", "grip", "joints"),
        "rot6d",
        "command",
        "EE pos + 6D rotation + grip + joints -> absolute EE pos + 6D rotation + grip",
    ),
    "ee_objects": CodecLayout(
        ("ee_pose", "grip"),
        "quat",
        "command",
        "EE pose + grip, object poses (sim only) -> absolute EE pose + grip",
        objects=True,
    ),
    "ee_joints_objects": CodecLayout(
        ("ee_pose", "grip", "joints"),
        "quat",
        "command",
        "EE pose + grip + joints, object poses (sim only) -> absolute EE pose + grip",
        objects=True,
    ),
    "ee_objects_rel": CodecLayout(
        ("ee_pose", "grip"),
        "quat",
        "command",
        "EE pose + grip, object poses relative to the EE (sim only) -> EE pose chunk relative to the EE + grip",
        objects=True,
        relative=True,
    ),
    "ee_cams": CodecLayout(
        ("ee_pose", "grip"),
        "quat",
        "command",
        "cameras + EE pose + grip (camera-only, no privileged state) -> absolute EE pose + grip",
        camera_only=True,
    ),
    "ee_cams_rel": CodecLayout(
        ("ee_pose", "grip"),
        "quat",
        "command",
        "cameras + EE pose + grip (camera-only, no privileged state) -> EE pose chunk relative to the EE + grip",
        relative=True,
        camera_only=True,
    ),
}
ALIASES: dict[str, str] = {"ee": "eepose_absolute", "joints": "joints_absolute"}
# Features a camera-only codec may have: everything else (observation.environment_state...) is not what a robot
# measures about itself or sees.
CAMERA_ONLY_FEATURES = ("observation.state", "action")
CAMERA_FEATURE_PREFIX = "observation.images."


def available_codecs() -> list[str]:
    """Canonical codec names followed by their aliases."""
    return sorted(LAYOUTS) + sorted(ALIASES)


def canonical_name(name: str) -> str:
    """Resolve an alias (``ee`` -> ``eepose_absolute``); unknown names raise :class:`CodecError`."""
    resolved = ALIASES.get(name, name)
    if resolved not in LAYOUTS:
        raise CodecError(f"unknown codec '{name}'; available: {', '.join(available_codecs())}")
    return resolved


@dataclass(frozen=True)
class CodecChannels:
    """Where a codec reads each signal: ``node/output`` channel names, docs/contracts.md's by default.

    A graph whose nodes are named otherwise maps them here, e.g. ``get_codec("ee", channels={"arm/state":
    "robot/state"})`` or ``robotflow convert --channel arm/state=robot/state``. Cameras are mapped by the
    ``cameras`` param. Channel names are wiring: they are stored in the spec but never make two codecs differ.
    """

    arm_state: str = ARM_STATE
    arm_command: str = ARM_COMMAND
    gripper_state: str = GRIPPER_STATE
    gripper_command: str = GRIPPER_COMMAND
    task: str = TASK_CHANNEL
    objects: str = OBJECTS_CHANNEL

    def __post_init__(self) -> None:
        for role, channel in self.to_json().items():
            if not isinstance(channel, str) or channel.count("/") != 1 or channel[0] == "/" or channel[-1] == "/":
                raise CodecError(f"codec channel '{role}' must be 'node/output', got {channel!r}")

    def to_json(self) -> dict[str, str]:
        return {role: getattr(self, role) for role in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, channels: Mapping[str, str]) -> CodecChannels:
        """From ``{role or default channel: channel}``: ``arm_state`` and ``arm/state`` name the same one."""
        defaults = cls().to_json()
        role_of = {channel: role for role, channel in defaults.items()}
        kwargs: dict[str, str] = {}
        for key, channel in dict(channels).items():
            role = key if key in defaults else role_of.get(key)
            if role is None:
                known = ", ".join(f"{r} ({c})" for r, c in defaults.items())
                raise CodecError(f"unknown codec channel '{key}'; channels: {known}")
            kwargs[role] = channel
        return cls(**kwargs)


@dataclass(frozen=True)
class CodecParams:
    """Tunable parameters shared by every codec (all JSON-able; they go into the spec)."""

    cameras: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CAMERAS))
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE  # (height, width) of the stored/fed images
    task_field: str | None = "task"  # field of task/episode (and root attr of episode files) with the task text
    fps: int = 15
    channels: CodecChannels = field(default_factory=CodecChannels)
    # Object names of task/objects, in environment_state order (``*_objects`` codecs). Empty: `convert`
    # takes them from the first episode; live messages are reordered by name, so a task listing its
    # objects in another order still feeds the policy the trained layout.
    objects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        cams = dict(self.cameras)
        for cam, channel in cams.items():
            if not cam or not cam.replace("_", "").isalnum():
                raise CodecError(f"camera name '{cam}' must be alphanumeric/underscore (it becomes a feature key)")
            if channel.count("/") != 1:
                raise CodecError(f"camera '{cam}': channel '{channel}' is not 'node/output'")
        object.__setattr__(self, "cameras", cams)
        size = tuple(int(s) for s in self.image_size)
        if len(size) != 2 or min(size) < 8:
            raise CodecError(f"image_size must be (height, width) with both >= 8, got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)
        if int(self.fps) <= 0:
            raise CodecError(f"fps must be positive, got {self.fps}")
        object.__setattr__(self, "fps", int(self.fps))
        if not isinstance(self.channels, CodecChannels):
            object.__setattr__(self, "channels", CodecChannels.from_json(self.channels or {}))
        objects = tuple(str(o) for o in (self.objects or ()))
        if len(set(objects)) != len(objects) or any(not o for o in objects):
            raise CodecError(f"objects must be distinct non-empty names, got {list(objects)}")
        object.__setattr__(self, "objects", objects)

    @classmethod
    def from_json(cls, params: Mapping[str, Any]) -> CodecParams:
        """Params from a stored spec; keys an older spec lacks take their defaults."""
        return cls(**{k: v for k, v in params.items() if k in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cameras": dict(self.cameras),
            "image_size": list(self.image_size),
            "task_field": self.task_field,
            "fps": self.fps,
            "channels": self.channels.to_json(),
        }
        if self.objects:  # only the *_objects codecs carry it, so older specs stay comparable
            out["objects"] = list(self.objects)
        return out


def _get_field(msg: Any, name: str) -> Any:
    """Field access for runtime Messages (``msg[name]`` / ``msg.fields``) and plain dicts."""
    fields = getattr(msg, "fields", None)
    if isinstance(fields, Mapping):
        return fields[name]
    return msg[name]


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HWC uint8 RGB image to ``size`` = (height, width); returns a fresh, writable array.

    INTER_AREA when shrinking (it averages, so no aliasing on the 2x RealSense downsample) and
    INTER_LINEAR when growing. The same function runs at conversion and at inference, so the policy
    sees identically resampled pixels in both.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise CodecError(f"expected an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    h, w = size
    if img.shape[:2] == (h, w):
        return np.array(img, copy=True)
    import cv2

    interp = cv2.INTER_AREA if (img.shape[0] >= h and img.shape[1] >= w) else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


class Codec:
    """One observation encoder + action decoder + label rule. Build with :func:`get_codec`."""

    def __init__(self, name: str, params: CodecParams | None = None):
        self.name = canonical_name(name)
        self.layout = LAYOUTS[self.name]
        self.params = params or CodecParams()
        self._prev_quat: np.ndarray | None = None  # live quaternion continuity, see reset()
        if self.layout.camera_only:
            self._check_camera_only()

    def _check_camera_only(self) -> None:
        if self.params.objects:
            raise CodecError(f"codec '{self.name}' is camera-only and cannot take object names (privileged state)")
        if not self.params.cameras:
            raise CodecError(f"codec '{self.name}' is camera-only and needs at least one camera")
        ch = self.params.channels
        read = {"arm_state": ch.arm_state, "gripper_state": ch.gripper_state, "arm_command": ch.arm_command}
        read |= {"gripper_command": ch.gripper_command, "task": ch.task}
        read |= {f"camera '{cam}'": channel for cam, channel in self.params.cameras.items()}
        check_camera_only(self.name, self.features(), read)

    # -- description -----------------------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        return [n for part in self.layout.state for n in _PART_NAMES[part]]

    @property
    def action_names(self) -> list[str]:
        pose = "ee_rot6d" if self.layout.rotation == "rot6d" else "ee_pose"
        return _PART_NAMES[pose] + _PART_NAMES["grip"]

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def environment_names(self) -> list[str]:
        """Names of ``observation.environment_state``: ``<object>.x`` ... ``<object>.qz`` per object."""
        names = RELATIVE_OBJECT_POSE_NAMES if self.layout.relative else OBJECT_POSE_NAMES
        return [f"{obj}.{n}" for obj in self.params.objects for n in names]

    def _require_objects(self) -> None:
        if self.layout.objects and not self.params.objects:
            raise CodecError(
                f"codec '{self.name}' needs the object names of '{OBJECTS_CHANNEL}' "
                "(convert takes them from the episodes; or pass objects=[...])"
            )

    def with_objects(self, names: list[str] | tuple[str, ...]) -> Codec:
        """The same codec with its object names set (what `convert` does from the first episode)."""
        return Codec(self.name, replace(self.params, objects=tuple(names)))

    @property
    def camera_keys(self) -> dict[str, str]:
        """Feature key -> channel, e.g. ``observation.images.wrist`` -> ``wrist_camera/frame``."""
        return {f"observation.images.{cam}": ch for cam, ch in self.params.cameras.items()}

    def features(self) -> dict[str, dict[str, Any]]:
        """LeRobot feature dict (dtype/shape/names) for ``LeRobotDataset.create``.

        Images are ``video`` features (LeRobot's default storage); shapes are tuples as LeRobot expects.
        """
        h, w = self.params.image_size
        feats: dict[str, dict[str, Any]] = {}
        for key in self.camera_keys:
            feats[key] = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
        feats["observation.state"] = {"dtype": "float32", "shape": (self.state_dim,), "names": self.state_names}
        if self.layout.objects:
            self._require_objects()
            names = self.environment_names
            feats["observation.environment_state"] = {"dtype": "float32", "shape": (len(names),), "names": names}
        feats["action"] = {"dtype": "float32", "shape": (self.action_dim,), "names": self.action_names}
        return feats

    def required_streams(self) -> list[tuple[str, str, str]]:
        """``(channel, field, why)`` for every recorded stream this codec reads from an episode."""
        need: list[tuple[str, str, str]] = []
        ch = self.params.channels
        parts = set(self.layout.state)
        if parts & {"ee_pose", "ee_rot6d"} or self.layout.labels == "trajectory":
            need.append((ch.arm_state, "ee_pose", "EE pose state/labels"))
        if "joints" in parts:
            need.append((ch.arm_state, "joint_pos", "joint state"))
        need.append((ch.gripper_state, "width", "grip state"))
        if self.layout.labels == "command":
            need.append((ch.arm_command, "ee_pose", "action labels (commanded EE pose)"))
            need.append((ch.gripper_command, "width", "action labels (commanded grip)"))
        if self.layout.objects:
            need.append((ch.objects, "names", "object names (environment state)"))
            need.append((ch.objects, "poses", "object poses (environment state)"))
        for cam, channel in self.params.cameras.items():
            need.append((channel, "image", f"camera '{cam}'"))
        return need

    def spec(self) -> dict[str, Any]:
        """JSON-able description: name, every param, and the feature shapes it produces."""
        feats = {
            k: {"dtype": v["dtype"], "shape": list(v["shape"]), "names": list(v["names"])}
            for k, v in self.features().items()
        }
        return {
            "format": CODEC_SPEC_FORMAT,
            "name": self.name,
            "params": self.params.to_json(),
            "rotation": self.layout.rotation,
            "labels": self.layout.labels,
            "features": feats,
        }

    def __repr__(self) -> str:
        return f"Codec({self.name!r}, {json.dumps(self.params.to_json())})"

    # -- shared math -----------------------------------------------------------------------------
    def _pose_vectors(self, ee_pose: np.ndarray) -> np.ndarray:
        """(N, 7) pose with continuous quaternions -> (N, 7) or (N, 9) in the codec's rotation."""
        if self.layout.rotation == "rot6d":
            return np.concatenate([ee_pose[:, :3], quat_to_rot6d(ee_pose[:, 3:7])], axis=1)
        return ee_pose

    def _state_matrix(self, ee_pose: np.ndarray | None, grip: np.ndarray, joints: np.ndarray | None) -> np.ndarray:
        cols: list[np.ndarray] = []
        for part in self.layout.state:
            if part in ("ee_pose", "ee_rot6d"):
                assert ee_pose is not None
                cols.append(self._pose_vectors(ee_pose))
            elif part == "grip":
                cols.append(grip.reshape(-1, 1))
            elif part == "joints":
                assert joints is not None
                cols.append(joints)
        return np.concatenate(cols, axis=1).astype(np.float32)

    # -- offline (episode) encoding -------------------------------------------------------------
    def encode_arrays(
        self,
        *,
        state_ee_pose: np.ndarray | None,
        state_grip: np.ndarray,
        state_joints: np.ndarray | None,
        command_ee_pose: np.ndarray | None = None,
        command_grip: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """State and action matrices for one episode already resampled onto the frame grid.

        Inputs are (N, 7) poses/joints and (N,) grip widths. Quaternions are made sign-continuous
        along the episode; the action chain is seeded with the first state quaternion so state and
        action share a hemisphere (the network then regresses nearby numbers, not sign flips).
        Trajectory labels take the state at the next frame (the last frame repeats itself) and the
        observed grip binarised at 0.5.
        """
        n = state_grip.shape[0]
        ee = None
        if state_ee_pose is not None:
            ee = np.array(state_ee_pose, dtype=np.float64)
            ee[:, 3:7] = continuous_quats(canonical_quat(ee[:, 3:7]), previous=QUAT_CHAIN_REFERENCE)
        state = self._state_matrix(
            ee,
            np.asarray(state_grip, np.float64),
            None if state_joints is None else np.asarray(state_joints, np.float64),
        )

        if self.layout.labels == "trajectory":
            if ee is None:
                raise CodecError(f"codec '{self.name}' needs the observed EE pose for trajectory labels")
            nxt = np.minimum(np.arange(n) + 1, n - 1)
            act_pose = ee[nxt]
            act_grip = (np.asarray(state_grip, np.float64)[nxt] > GRIP_THRESHOLD).astype(np.float64)
        else:
            if command_ee_pose is None or command_grip is None:
                raise CodecError(f"codec '{self.name}' needs commanded EE pose and grip for its labels")
            act_pose = np.array(command_ee_pose, dtype=np.float64)
            seed = ee[0, 3:7] if ee is not None else None
            act_pose[:, 3:7] = continuous_quats(canonical_quat(act_pose[:, 3:7]), previous=seed)
            act_grip = np.asarray(command_grip, np.float64)
        action = np.concatenate([self._pose_vectors(act_pose), act_grip.reshape(-1, 1)], axis=1).astype(np.float32)
        return state, action

    def encode_objects(self, names: str, poses: np.ndarray, ee_position: np.ndarray | None = None) -> np.ndarray:
        """One ``task/objects`` message (comma-separated names, (K, 7) poses) -> environment_state (7 K',) f32.

        Objects are taken by name in the codec's order; quaternions are made ``w >= 0`` (the task already
        publishes them so; a recorder on another source may not). Relative codecs subtract `ee_position`
        (the EE position observed at the same instant) from every object position.
        """
        self._require_objects()
        if self.layout.relative and ee_position is None:
            raise CodecError(f"codec '{self.name}' needs the EE position to encode object positions relative to it")
        listed = [n for n in str(names).split(",") if n]
        arr = np.asarray(poses, dtype=np.float64).reshape(len(listed), 7) if listed else np.zeros((0, 7))
        rows = []
        for obj in self.params.objects:
            if obj not in listed:
                raise CodecError(
                    f"codec '{self.name}': object '{obj}' not in '{OBJECTS_CHANNEL}' (it lists {', '.join(listed)})"
                )
            pose = arr[listed.index(obj)].copy()
            pose[3:7] = canonical_quat(pose[3:7])
            if self.layout.relative:
                pose[:3] -= np.asarray(ee_position, np.float64)[:3]
            rows.append(pose)
        return np.concatenate(rows).astype(np.float32)

    def encode_objects_arrays(
        self, names: np.ndarray, poses: np.ndarray, ee_positions: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-frame names (N,) and poses (N, K, 7) held on the frame grid -> (N, 7 K') float32.

        `ee_positions` (N, 3): the observed EE position of each frame, for relative codecs."""
        ee = [None] * len(names) if ee_positions is None else ee_positions
        return np.stack([self.encode_objects(n, p, e) for n, p, e in zip(names, poses, ee)]).astype(np.float32)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """Resize a stack of (N, H, W, 3) frames to the codec's image size."""
        h, w = self.params.image_size
        if images.shape[1:3] == (h, w):
            return np.ascontiguousarray(images)
        return (
            np.stack([resize_image(img, (h, w)) for img in images]) if len(images) else np.zeros((0, h, w, 3), np.uint8)
        )

    # -- live encoding ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the live quaternion history; call at the start of every episode/rollout."""
        self._prev_quat = None

    def encode_live(self, latest: Mapping[str, MessageLike]) -> dict[str, np.ndarray]:
        """Encode the newest message of each channel into one policy observation.

        ``latest`` maps channel (``arm/state``...) to a runtime ``Message`` (or any object with
        ``.fields`` or ``__getitem__``). Returns ``observation.state`` float32 ``(D,)`` and
        ``observation.images.<cam>`` uint8 ``(H, W, 3)`` resized: exactly the numpy observation
        LeRobot's ``predict_action``/``prepare_observation_for_inference`` take. The task text is
        separate (:meth:`live_task`). Raises :class:`CodecError` naming a missing channel or field.
        """

        def get(channel: str, name: str) -> Any:
            msg = latest.get(channel)
            if msg is None:
                raise CodecError(f"codec '{self.name}': no message yet on '{channel}'")
            try:
                return _get_field(msg, name)
            except (KeyError, TypeError):
                raise CodecError(f"codec '{self.name}': channel '{channel}' has no field '{name}'") from None

        ch = self.params.channels
        parts = set(self.layout.state)
        ee = None
        if parts & {"ee_pose", "ee_rot6d"}:
            ee = np.array(get(ch.arm_state, "ee_pose"), dtype=np.float64).reshape(1, 7)
            q = canonical_quat(ee[0, 3:7])
            prev = QUAT_CHAIN_REFERENCE if self._prev_quat is None else self._prev_quat
            if float(np.dot(q, prev)) < 0.0:
                q = -q
            self._prev_quat = q
            ee[0, 3:7] = q
        joints = np.array(get(ch.arm_state, "joint_pos"), dtype=np.float64).reshape(1, 7) if "joints" in parts else None
        grip = np.array([float(get(ch.gripper_state, "width"))])
        out: dict[str, np.ndarray] = {"observation.state": self._state_matrix(ee, grip, joints)[0]}
        if self.layout.objects:
            out["observation.environment_state"] = self.encode_objects(
                get(ch.objects, "names"), get(ch.objects, "poses"), None if ee is None else ee[0, :3]
            )
        for key, channel in self.camera_keys.items():
            out[key] = resize_image(get(channel, "image"), self.params.image_size)
        return out

    def live_task(self, latest: Mapping[str, MessageLike], default: str | None = None) -> str | None:
        """Task text from the latest ``task/episode`` message (field ``task_field``), else ``default``.

        ACT ignores it; language-conditioned LeRobot policies take it as ``predict_action(..., task=)``.
        """
        msg = latest.get(self.params.channels.task)
        if not self.params.task_field or msg is None:
            return default
        try:
            text = str(_get_field(msg, self.params.task_field))
        except (KeyError, TypeError):
            return default
        return text or default

    # -- decoding ----------------------------------------------------------------------------------
    def decode(self, action: np.ndarray) -> dict[str, Any]:
        """Policy action vector -> ``{"ee_pose": (7,) float64 [x,y,z,qw,qx,qy,qz], "width": float}``.

        The quaternion is normalised with ``w >= 0`` (a 6D rotation is orthonormalised by
        Gram-Schmidt first); the width is clipped to the contract's 0..1 range. Actions of relative codecs
        arrive here absolute: the chunk executor adds the observed EE position to each chunk.
        """
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape[0] != self.action_dim:
            raise CodecError(f"codec '{self.name}' decodes {self.action_dim}-d actions, got shape {np.shape(action)}")
        poses, widths = self.decode_chunk(a[None])
        return {"ee_pose": poses[0], "width": float(widths[0])}

    def decode_chunk(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A chunk of policy actions ``(N, action_dim)`` -> poses ``(N, 7)`` float64 and widths ``(N,)``, each
        row what :meth:`decode` gives for it, in one vectorised pass (a server answers 100-step chunks)."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != self.action_dim:
            raise CodecError(f"codec '{self.name}' decodes (N, {self.action_dim}) chunks, got shape {a.shape}")
        quats = rot6d_to_quat(a[:, 3:9]) if self.layout.rotation == "rot6d" else canonical_quat(a[:, 3:7])
        return np.concatenate([a[:, :3], quats], axis=1), np.clip(a[:, -1], 0.0, 1.0)


def get_codec(
    name: str,
    *,
    cameras: Mapping[str, str] | None = None,
    image_size: tuple[int, int] | list[int] | None = None,
    task_field: str | None = "task",
    channels: Mapping[str, str] | None = None,
    fps: int = 15,
    objects: list[str] | tuple[str, ...] | None = None,
) -> Codec:
    """Build a codec by name (``eepose_absolute``/``ee``, ``joints_absolute``/``joints``, ``ee_joints``,
    ``ee_traj``, ``joints_traj``, ``ee_joints_traj``, ``ee_rot6d_joints``, ``ee_objects``,
    ``ee_joints_objects``). ``cameras=None`` means the default cameras, or none for the low-dim
    ``*_objects`` codecs."""
    layout = LAYOUTS[canonical_name(name)]
    if cameras is None:
        cameras = {} if layout.objects else DEFAULT_CAMERAS
    params = CodecParams(
        cameras=dict(cameras),
        image_size=tuple(image_size) if image_size is not None else DEFAULT_IMAGE_SIZE,  # type: ignore[arg-type]
        task_field=task_field,
        channels=CodecChannels.from_json(channels or {}),
        fps=fps,
        objects=tuple(objects or ()),
    )
    return Codec(name, params)
