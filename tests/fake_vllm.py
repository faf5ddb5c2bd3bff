"""Stands in for the ``vllm`` executable in the answer-server tests: ``fake_vllm.py serve <weights>
--served-model-name NAME --host HOST --port PORT [--allowed-local-media-path DIR] [...]`` serves the fake
vision server under that name until SIGTERM, so the resource's real start / readiness / check / stop
code runs against a real process. ``FAKE_VLLM_EXIT`` makes it fail at start, as vLLM does on bad weights.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_vision_server import FakeVisionServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("weights")
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--allowed-local-media-path")
    args, _ = parser.parse_known_args()
    if os.environ.get("FAKE_VLLM_EXIT"):
        print(f"ValueError: cannot load {args.weights}", flush=True)
        sys.exit(int(os.environ["FAKE_VLLM_EXIT"]))
    media_root = Path(args.allowed_local_media_path) if args.allowed_local_media_path else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = FakeVisionServer(
        args.served_model_name,
        root=args.weights,
        media_root=media_root,
        api_key=os.environ.get("VLLM_API_KEY"),  # as vLLM reads it
    )
    server.port = args.port
    with server:
        print(f"serving {args.served_model_name} on {args.host}:{args.port}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
