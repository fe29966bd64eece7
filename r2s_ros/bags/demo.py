"""r2s-demo (`make demo`): a generated scan bag replayed live to the r2s node, summarised.

    r2s-demo [--checkpoint PATH] [--seed 0] [--frames 20] [--instructions 5] [--work out/demo]

1. r2s-make-bag writes a bag of simulated depth scans of a generated room, with instructions;
2. the node starts in its own process with the shipped model (or --checkpoint);
3. r2s-replay --live publishes the bag to it at the recorded pace, records its outputs and
   prints each instruction's status, target, relevant elements, IoU and latency;
4. the node is stopped (SIGINT, as Ctrl-C would) and the report and a render are named.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from r2s_model.checkpoint import DEFAULT_CHECKPOINT
from r2s_ros.bags import replay
from r2s_ros.bags.make_bag import BagSettings, make_bag

PARAMS_FILE = Path(__file__).resolve().parents[2] / "config" / "r2s.yaml"
NODE_READY = "ready: model"  # the node's log line once it listens
NODE_START_TIMEOUT_S = 300.0  # the default LLM loads in ~10 s; a first run converts it (~35 s)


def start_node(checkpoint: Path, device: str, log: Path) -> subprocess.Popen:
    """`r2s-node` with config/r2s.yaml and the checkpoint; its output goes to `log`."""
    arguments = ["--ros-args"]
    if PARAMS_FILE.is_file():  # the source tree's; an install has the same defaults built in
        arguments += ["--params-file", str(PARAMS_FILE)]
    # Reliable clouds: a demo on one machine should not lose a scan to best-effort fragments.
    for value in (f"checkpoint:={checkpoint}", f"device:={device}", "points_qos:=reliable"):
        arguments += ["-p", value]
    with open(log, "w") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "r2s_ros.node", *arguments],
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_until_ready(node: subprocess.Popen, log: Path) -> bool:
    """True once the node logged that it is ready; False when it exited or took too long."""
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while time.monotonic() < deadline and node.poll() is None:
        if NODE_READY in log.read_text(errors="replace"):
            return True
        time.sleep(0.5)
    return False


def stop_node(node: subprocess.Popen, timeout_s: float = 20.0) -> int:
    """SIGINT (the node shuts down cleanly), SIGKILL if it has not exited in timeout_s."""
    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    return node.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="r2s-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--seed", type=int, default=0, help="room seed of the bag")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--instructions", type=int, default=5)
    parser.add_argument("--speed", type=float, default=1.0, help="times the recorded pace")
    parser.add_argument("--device", default="auto", help="the node's device")
    parser.add_argument("--work", type=Path, default=Path("out/demo"), help="bag, logs, report")
    args = parser.parse_args(argv)
    if not (args.checkpoint / "config.json").is_file():
        parser.error(f"no checkpoint at {args.checkpoint}; pass --checkpoint PATH")
    # Demo traffic stays on this machine; the model must not reach for the network.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    args.work.mkdir(parents=True, exist_ok=True)
    settings = BagSettings(seed=args.seed, frames=args.frames, instructions=args.instructions)
    bag = make_bag(args.work / f"bag_seed{args.seed}", settings, overwrite=True).path
    log = args.work / "node.log"
    print(f"starting the r2s node with {args.checkpoint} (log: {log})", flush=True)
    node = start_node(args.checkpoint, args.device, log)
    try:
        if not wait_until_ready(node, log):
            print(f"the node did not start; {log}:\n{log.read_text()[-3000:]}", file=sys.stderr)
            return 1
        out = args.work / "report.json"
        code = replay.main(
            [str(bag), "--live", "--out", str(out), "--speed", str(args.speed), "--timeout", "120"]
        )
    finally:
        stopped = stop_node(node)
    print(f"node stopped (exit code {stopped})")
    return code


if __name__ == "__main__":
    sys.exit(main())
