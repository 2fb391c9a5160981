"""The Franka twin: franky-sim's FR3 in the task's scene, served over libfranka to the real Franka drivers."""
