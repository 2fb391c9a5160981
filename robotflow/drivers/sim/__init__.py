"""MuJoCo simulation: the Panda scene, IK arm, gripper, cameras and tasks (see docs/sim.md).

The nodes live in `robotflow.drivers.sim.nodes`; everything else here is free of runtime code.
"""
