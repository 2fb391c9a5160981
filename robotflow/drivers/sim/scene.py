"""The simulated scene: MuJoCo Menagerie's Franka Panda (as shipped inside gym-hil) on a table.

The robot model is loaded from gym-hil's bundled assets (`gym_hil/assets/panda.xml`: the Menagerie Panda
arm with a Robotiq 2F-85 gripper and its meshes) and edited with `mujoco.MjSpec`, so no arm geometry is
hand-made here. The edits:

- gym-hil drives the arm with torque motors for operational-space control. We turn them into joint
  position actuators with Menagerie's Panda gains (the model has no position actuators) and keep the
  motors' torque limits as force limits.
- Arm and gripper bodies get gravity compensation, like the real Franka's controller, so a joint
  position command is tracked without a steady-state sag (the IK accuracy bar is 5 mm).
- A table (its top is the robot base plane z = 0), task objects, lights and two cameras are added:
  `wrist` on the hand, `front` facing the robot.
- Rendering is set up for CPU machines: no multisampling (`offsamples=0`), no shadows (`shadowsize=0`),
  visual meshes simplified (meshes.py; collision meshes untouched). The offscreen buffer size is set per
  camera by the renderer (render.py).

Frames: the world frame is the robot base frame (link0 at the origin), so poses on channels need no
conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from .meshes import lighten_visual_meshes

TASKS = ("stack_cubes", "pick_place")
CAMERAS = ("front", "wrist")  # the cameras _add_cameras puts in every scene

# Menagerie Panda "home" keyframe: gripper pointing down above the table.
HOME_QPOS = np.array([0.0, 0.0, 0.0, -1.57079, 0.0, 1.57079, -0.7853])
ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
ARM_ACTUATORS = tuple(f"actuator{i}" for i in range(1, 8))
GRIPPER_ACTUATOR = "fingers_actuator"
EE_SITE = "pinch"  # the point between the 2F-85 pads: the tool centre point of `ee_pose`
ROBOT_ROOT = "link0"
# Menagerie franka_emika_panda/panda.xml position-actuator gains (kp, kv) per joint.
ARM_KP = (4500.0, 4500.0, 3500.0, 3500.0, 2000.0, 2000.0, 2000.0)
ARM_KV = (450.0, 450.0, 350.0, 350.0, 200.0, 200.0, 200.0)

CUBE_HALF = 0.02  # 4 cm cubes, 0.1 kg, like gym-hil's blocks
CUBE_MASS = 0.1
BIN_HALF = 0.07  # inner half-width of the bin
BIN_WALL = 0.006
BIN_HEIGHT = 0.05
TABLE_TOP = 0.0


@dataclass(frozen=True)
class ObjectSpec:
    """A task object: a free cube (`cube`) or a fixed-to-the-table bin (`bin`, a mocap body)."""

    name: str
    kind: str
    rgba: tuple[float, float, float, float]


TASK_OBJECTS: dict[str, tuple[ObjectSpec, ...]] = {
    "stack_cubes": (
        ObjectSpec("red_cube", "cube", (0.85, 0.1, 0.1, 1.0)),
        ObjectSpec("green_cube", "cube", (0.1, 0.75, 0.15, 1.0)),
    ),
    "pick_place": (
        ObjectSpec("cube", "cube", (0.15, 0.3, 0.9, 1.0)),
        ObjectSpec("bin", "bin", (0.55, 0.4, 0.25, 1.0)),
    ),
}


def gym_hil_assets() -> Path:
    """Directory of gym-hil's MuJoCo assets (the Menagerie Panda with meshes)."""
    try:
        import gym_hil
    except ImportError as e:  # pragma: no cover - environment problem
        raise ImportError("robotflow's simulation needs gym-hil for the Franka Panda model: pip install gym-hil") from e
    path = Path(gym_hil.__file__).resolve().parent / "assets"
    if not (path / "panda.xml").is_file():  # pragma: no cover
        raise FileNotFoundError(f"gym-hil is installed but {path / 'panda.xml'} is missing")
    return path


def _add_cube(world: mujoco.MjsBody, obj: ObjectSpec, x: float) -> None:
    body = world.add_body(name=obj.name, pos=[x, 0.0, TABLE_TOP + CUBE_HALF])
    body.add_freejoint(name=obj.name)
    body.add_geom(
        name=obj.name,
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[CUBE_HALF] * 3,
        mass=CUBE_MASS,
        rgba=list(obj.rgba),
        friction=[1.0, 0.01, 0.001],
    )


def _add_bin(world: mujoco.MjsBody, obj: ObjectSpec, x: float) -> None:
    # A mocap body: fixed during physics, but its pose lives in MjData so a reset can move it.
    body = world.add_body(name=obj.name, pos=[x, 0.0, TABLE_TOP], mocap=True)
    h, w, t = BIN_HEIGHT / 2, BIN_HALF, BIN_WALL / 2
    rgba = list(obj.rgba)
    body.add_geom(
        name=f"{obj.name}_floor",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[w + 2 * t, w + 2 * t, t],
        pos=[0, 0, t],
        rgba=rgba,
    )
    for i, (px, py, sx, sy) in enumerate(
        [(w + t, 0, t, w + 2 * t), (-w - t, 0, t, w + 2 * t), (0, w + t, w, t), (0, -w - t, w, t)]
    ):
        body.add_geom(
            name=f"{obj.name}_wall{i}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[sx, sy, h], pos=[px, py, h], rgba=rgba
        )


def build_spec(task: str = "stack_cubes", timestep: float = 0.002, visual_cell: float = 0.004) -> mujoco.MjSpec:
    """The editable scene description for `task` (see the module docstring for what is changed)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    spec = mujoco.MjSpec.from_file(str(gym_hil_assets() / "panda.xml"))
    spec.modelname = f"robotflow_{task}"
    if visual_cell > 0:
        lighten_visual_meshes(spec, visual_cell)
    _set_physics_and_visuals(spec, timestep)
    _position_controlled_arm(spec)
    _add_room(spec)
    _add_cameras(spec)
    for k, obj in enumerate(TASK_OBJECTS[task]):
        (_add_cube if obj.kind == "cube" else _add_bin)(spec.worldbody, obj, 0.45 + 0.1 * k)
    return spec


def _set_physics_and_visuals(spec: mujoco.MjSpec, timestep: float) -> None:
    spec.option.timestep = timestep
    # implicitfast integrates the position actuators' damping implicitly: stable at 2 ms with stiff gains.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # gym-hil's scene uses noslip iterations so grasped blocks do not creep out of the soft pads.
    spec.option.noslip_iterations = 5
    spec.option.noslip_tolerance = 0.0
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.visual.quality.offsamples = 0
    spec.visual.quality.shadowsize = 0
    spec.visual.global_.offwidth = 320
    spec.visual.global_.offheight = 240
    spec.visual.headlight.ambient = [0.4, 0.4, 0.4]
    spec.visual.headlight.diffuse = [0.5, 0.5, 0.5]
    spec.stat.center = [0.35, 0.0, 0.2]
    spec.stat.extent = 0.9


def _position_controlled_arm(spec: mujoco.MjSpec) -> None:
    """gym-hil's torque motors become position servos within the joint ranges, and the robot is gravity-compensated."""
    joint_range = {j.name: (j.range[0], j.range[1]) for j in spec.joints}
    for i, name in enumerate(ARM_ACTUATORS):
        act = spec.actuator(name)
        tau = float(act.ctrlrange[1])  # the motor's torque limit becomes the position actuator's force limit
        act.set_to_position(kp=ARM_KP[i], kv=ARM_KV[i])
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange = list(joint_range[ARM_JOINTS[i]])
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-tau, tau]
    stack = [spec.body(ROBOT_ROOT)]
    while stack:  # gravity compensation for the whole robot subtree
        body = stack.pop()
        body.gravcomp = 1.0
        stack.extend(body.bodies)


def _add_room(spec: mujoco.MjSpec) -> None:
    """Floor, table and two shadowless lights."""
    world = spec.worldbody
    spec.add_texture(
        name="floor_tex",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        width=256,
        height=256,
        rgb1=[0.25, 0.27, 0.3],
        rgb2=[0.3, 0.32, 0.35],
    )
    mat = spec.add_material(name="floor_mat", texrepeat=[4, 4], texuniform=True)
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "floor_tex"
    world.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.05], pos=[0, 0, -0.75], material="floor_mat"
    )
    world.add_geom(
        name="table",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.55, 0.7, 0.375],
        pos=[0.35, 0.0, TABLE_TOP - 0.375],
        rgba=[0.62, 0.55, 0.45, 1.0],
    )
    for name, pos, direction, diffuse, specular in (
        ("top", [0.4, 0, 2.0], [0, 0, -1], [0.7] * 3, [0.2] * 3),
        ("side", [1.2, -0.8, 1.0], [-0.6, 0.5, -0.6], [0.3] * 3, [0.0] * 3),
    ):
        world.add_light(name=name, pos=pos, dir=direction, diffuse=diffuse, specular=specular, castshadow=False)


def _add_cameras(spec: mujoco.MjSpec) -> None:
    # front: across the table, looking back at the robot and the workspace (x 0.3..0.7 m).
    spec.worldbody.add_camera(name="front", pos=[1.1, 0.0, 0.6], xyaxes=[0, 1, 0, -0.581, 0, 0.814], fovy=45)
    # wrist: on the gripper base, beside the fingers' plane of motion so they never hide the view, tilted
    # toward the pinch point; the pads are at the bottom of the image.
    spec.body("base").add_camera(name="wrist", pos=[0.07, 0.0, 0.02], fovy=70, xyaxes=[0, 1, 0, 0.958, 0, 0.287])


def build_model(task: str = "stack_cubes", timestep: float = 0.002, visual_cell: float = 0.004) -> mujoco.MjModel:
    """Compile the scene for `task` with the given physics timestep (seconds).

    visual_cell: grid (m) the visual meshes are simplified to for CPU rendering (see meshes.py); 0 keeps
    the original meshes.
    """
    return build_spec(task, timestep, visual_cell).compile()
