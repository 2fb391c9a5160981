"""Remote inference round trip: `robotflow serve` vs LeRobot 0.4.4's async-inference gRPC server.

    python -m benchmarks.serve --json

One randomly initialised ACT checkpoint (resnet18, dim 512, chunk 100, two 240x320 cameras by default) is
served twice at once on loopback, by `robotflow serve` and by `lerobot.async_inference.policy_server`
(its `inference_latency` set to 0, so it never sleeps to pace itself). A client sends one observation with
two 240x320 images and waits for the whole action chunk, alternating between the servers so both see the
same machine load. Timed: serialisation, transport, the server's pre-processing, forward pass and
post-processing, and the decoding of the answer; network cost is in both.

- robotflow: a WebSocket session (`robotflow.wire.client`), msgpack observation, `{"result": [...]}`.
  `overhead_ms_p50`: round trip minus the forward pass of the same request on the same checkpoint (the
  server's `timing.infer_ms`, measured around the policy call alone), so the serving cost itself.
- LeRobot: what its `RobotClient` does per chunk: `SendObservations` (a pickled `TimedObservation`,
  `must_go` so the server's similarity filter never drops it) then `GetActions` (a pickled list of
  `TimedAction`).
"""

from __future__ import annotations

import os
import pickle  # noqa: S403  (LeRobot's own wire format; the payloads are ours)
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from benchmarks._util import emit, machine, parser

CAMERAS = ("wrist", "front")
STATE_NAMES = [f"s{i}" for i in range(8)]


@dataclass
class BenchConfig:
    height: int = 240
    width: int = 320
    dim_model: int = 512
    chunk_size: int = 100
    requests: int = 30
    warmup: int = 3
    seed: int = 0
    device: str = "cpu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_checkpoint(cfg: BenchConfig, root: Path) -> Path:
    """A run dir with one checkpoint as `robotflow train` writes it (weights, processors, codec spec)."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from robotflow.codecs import get_codec, write_checkpoint_spec

    feats = {"observation.state": PolicyFeature(FeatureType.STATE, (8,))}
    for cam in CAMERAS:
        feats[f"observation.images.{cam}"] = PolicyFeature(FeatureType.VISUAL, (3, cfg.height, cfg.width))
    acfg = ACTConfig(
        input_features=feats,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (8,))},
        dim_model=cfg.dim_model,
        chunk_size=cfg.chunk_size,
        n_action_steps=cfg.chunk_size,
        pretrained_backbone_weights=None,
        device=cfg.device,
    )
    torch.manual_seed(cfg.seed)
    policy = ACTPolicy(acfg)
    stats = {
        "observation.state": {"mean": torch.zeros(8), "std": torch.ones(8)},
        "action": {"mean": torch.tensor([0.4, 0, 0.3, 1, 0, 0, 0, 0.5]), "std": torch.full((8,), 0.1)},
    }
    for cam in CAMERAS:
        stats[f"observation.images.{cam}"] = {"mean": torch.full((3, 1, 1), 0.45), "std": torch.full((3, 1, 1), 0.25)}
    pre, post = make_pre_post_processors(acfg, dataset_stats=stats)
    model_dir = root / "checkpoints" / "000001" / "pretrained_model"
    policy.save_pretrained(model_dir)
    pre.save_pretrained(model_dir)
    post.save_pretrained(model_dir)
    write_checkpoint_spec(model_dir, get_codec("ee", image_size=(cfg.height, cfg.width)))
    return model_dir


class Process:
    """A server subprocess whose output is drained (and kept) so it never blocks on a full pipe."""

    def __init__(self, cmd: list[str], ready: str, cwd: str | None = None, timeout: float = 180.0):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._marker = ready
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{cmd[2:5]} did not start:\n" + "\n".join(self.lines[-20:]))

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if self._marker in line:
                self._ready.set()
        self._ready.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def observations(cfg: BenchConfig, n: int):
    rng = np.random.default_rng(cfg.seed)
    for _ in range(n):
        yield (
            rng.standard_normal(7),
            rng.uniform(0, 1),
            {cam: rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8) for cam in CAMERAS},
        )


class RobotflowClient:
    """One session; each round trip is split into its phases (`phases`), the server's from its timing block."""

    def __init__(self, url: str):
        from robotflow.wire.client import RemoteSession

        self.session = RemoteSession(url, request_timeout=300.0)
        self.forward_ms: list[float] = []  # the server's forward pass of each request (its timing block)
        self.phases: list[dict[str, float]] = []

    def roundtrip(self, q, grip, images) -> int:
        from robotflow.wire.protocol import actions_from_wire, unpack

        t0 = time.perf_counter()
        obs = {
            "robot_state.q": q,
            "robot_state.dq": np.zeros(7),
            "robot_state.ee_pose": np.array([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0]),
            "grip": grip,
            **{f"image.{cam}": img for cam, img in images.items()},
        }
        payload = self.session.request(obs)
        t1 = time.perf_counter()
        reply = self.session.exchange(payload)
        t2 = time.perf_counter()
        n = len(actions_from_wire(self.session.result(unpack(reply)), fps=self.session.meta["action_fps"]))
        t3 = time.perf_counter()
        timing = self.session.timing
        served, infer = float(timing["served_ms"]), float(timing["infer_ms"])
        self.forward_ms.append(infer)
        self.phases.append(
            {
                "client_encode": (t1 - t0) * 1e3,
                "server_decode": float(timing["decode_ms"]),
                "server_queued": float(timing["queued_ms"]),
                "forward": infer,
                "server_reply": served - infer - float(timing["decode_ms"]) - float(timing["queued_ms"]),
                "transport": (t2 - t1) * 1e3 - served,
                "client_decode": (t3 - t2) * 1e3,
            }
        )
        return n

    def close(self) -> None:
        self.session.close()


class LeRobotGrpcClient:
    """The calls LeRobot's RobotClient makes, without a robot: Ready, SendPolicyInstructions, then per chunk
    SendObservations + GetActions."""

    def __init__(self, address: str, model_dir: Path, cfg: BenchConfig):
        import grpc
        from lerobot.async_inference.helpers import RemotePolicyConfig
        from lerobot.datasets.utils import hw_to_dataset_features
        from lerobot.transport import services_pb2, services_pb2_grpc
        from lerobot.transport.utils import grpc_channel_options

        self.pb = services_pb2
        self.channel = grpc.insecure_channel(address, grpc_channel_options())
        self.stub = services_pb2_grpc.AsyncInferenceStub(self.channel)
        hw = {name: float for name in STATE_NAMES}
        hw.update({cam: (cfg.height, cfg.width, 3) for cam in CAMERAS})
        self.features = hw_to_dataset_features(hw, "observation", use_video=False)
        self.stub.Ready(services_pb2.Empty())
        spec = RemotePolicyConfig(
            policy_type="act",
            pretrained_name_or_path=str(model_dir),
            lerobot_features=self.features,
            actions_per_chunk=cfg.chunk_size,
            device=cfg.device,
        )
        self.stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(spec)))
        self.timestep = 0

    def roundtrip(self, q, grip, images) -> int:
        from lerobot.async_inference.helpers import TimedObservation
        from lerobot.transport.utils import send_bytes_in_chunks

        raw = {name: float(v) for name, v in zip(STATE_NAMES, [*q, grip], strict=True)}
        raw.update(images)
        raw["task"] = ""
        obs = TimedObservation(timestamp=time.time(), timestep=self.timestep, observation=raw, must_go=True)
        self.timestep += 1
        self.stub.SendObservations(send_bytes_in_chunks(pickle.dumps(obs), self.pb.Observation, silent=True))
        reply = self.stub.GetActions(self.pb.Empty())
        actions = pickle.loads(reply.data)  # noqa: S301
        return len(actions)

    def close(self) -> None:
        self.channel.close()


def pct(xs, q) -> float:
    return round(float(np.percentile(xs, q)), 2)


def summarize(
    cfg: BenchConfig,
    times: dict[str, list[float]],
    forward_ms: list[float],
    phases: list[dict[str, float]],
    lengths: dict[str, set[int]],
    load_before: float,
) -> dict:
    """The printed figures: percentiles of both round trips, their ratio, and robotflow's serving overhead."""
    ours, theirs = times["robotflow"], times["lerobot_grpc"]
    # The bare forward pass (pre-processing, model, post-processing) of each timed request, as the server
    # measured it around the very call that answered it: round trip minus it is what serving costs.
    forward = forward_ms[cfg.warmup :]
    overhead = [t - f for t, f in zip(ours, forward, strict=True)]
    result = {
        "overhead_ms_p50": pct(overhead, 50),
        "overhead_ms_p99": pct(overhead, 99),
        "forward_ms_p50": pct(forward, 50),
        "roundtrip_ms_p50": pct(ours, 50),
        "roundtrip_ms_p99": pct(ours, 99),
        "lerobot_grpc_ms_p50": pct(theirs, 50),
        "lerobot_grpc_ms_p99": pct(theirs, 99),
        "ratio": round(float(np.percentile(ours, 50) / np.percentile(theirs, 50)), 3),
        # Where a robotflow round trip goes, p50 of each phase (ms): the client's packing of the observation,
        # the server's unpacking and encoding of it (decode), the wait for the inference thread (queued),
        # the forward pass, the decoding of the chunk into the reply's rows (reply), the WebSocket both ways
        # with the reply's packing and the event loop's hops (transport), the client's unpacking and
        # reading of the reply (client_decode).
        "breakdown_ms_p50": {k: pct([p[k] for p in phases[cfg.warmup :]], 50) for k in phases[0]},
        "actions_per_chunk": {k: sorted(v) for k, v in lengths.items()},
        "requests": cfg.requests,
        # Other processes on the machine change every number here; keep the load beside them.
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": machine(),
        "config": asdict(cfg),
    }
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__.splitlines()[0])
    for f in fields(BenchConfig):
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = ap.parse_args(argv)
    cfg = BenchConfig(**{f: getattr(args, f) for f in asdict(BenchConfig())})

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="robotflow-bench-serve-") as tmp:
        model_dir = make_checkpoint(cfg, Path(tmp) / "run")
        rf_port, grpc_port = free_port(), free_port()
        rf = Process(
            [sys.executable, "-m", "robotflow.scripts.cli", "serve", "--checkpoints-dir", str(Path(tmp) / "run")]
            + ["--port", str(rf_port), "--device", cfg.device],
            ready="serving",
        )
        lr = Process(
            [sys.executable, "-m", "lerobot.async_inference.policy_server", "--host=127.0.0.1"]
            + [f"--port={grpc_port}", "--fps=15", "--inference_latency=0", "--obs_queue_timeout=30"],
            ready="PolicyServer started",
            cwd=tmp,  # it writes its logs/ there
        )
        try:
            clients = {
                "robotflow": RobotflowClient(f"ws://127.0.0.1:{rf_port}"),
                "lerobot_grpc": LeRobotGrpcClient(f"127.0.0.1:{grpc_port}", model_dir, cfg),
            }
            times: dict[str, list[float]] = {name: [] for name in clients}
            lengths: dict[str, set[int]] = {name: set() for name in clients}
            for i, (q, grip, images) in enumerate(observations(cfg, cfg.warmup + cfg.requests)):
                # Alternate which server goes first, so neither always follows the other's burst.
                order = list(clients) if i % 2 == 0 else list(reversed(clients))
                for name in order:
                    t = time.perf_counter()
                    lengths[name].add(clients[name].roundtrip(q, grip, images))
                    if i >= cfg.warmup:
                        times[name].append((time.perf_counter() - t) * 1e3)
            forward_ms = clients["robotflow"].forward_ms
            phases = clients["robotflow"].phases
            for c in clients.values():
                c.close()
        finally:
            rf.stop()
            lr.stop()

    result = summarize(cfg, times, forward_ms, phases, lengths, load_before)
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
