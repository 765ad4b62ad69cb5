"""``python -m vectorsim --serial 00000001 [--images DIR] [--port P] [--name Vector-XXXX] [--home DIR]``.

Starts a virtual Vector, writes the SDK configuration under ``<home>/.anki_vector/`` and prints one line
``READY {"serial": ..., "port": ..., "control_url": ...}`` once it accepts connections. Stops on SIGINT/SIGTERM.
"""

import argparse
import json
import logging
import signal
import sys
import threading

from vectorsim.control import serve_control_in_thread
from vectorsim.server import VirtualVector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vectorsim", description="A virtual Anki Vector for the SDK.")
    parser.add_argument("--serial", required=True, help="serial number the SDK will use, e.g. 00000001")
    parser.add_argument("--images", help="folder of .jpg/.png camera frames served in a loop (default: generated)")
    parser.add_argument("--port", type=int, default=0, help="gRPC port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", help="robot name, also the TLS certificate's name (default Vector-<last 4>)")
    parser.add_argument("--home", help="home folder whose .anki_vector/sdk_config.ini is written (default: $HOME)")
    parser.add_argument("--guid", help="the SDK access token (default: random)")
    parser.add_argument("--control-port", type=int, default=0, help="local HTTP control API port (default: free)")
    parser.add_argument("--record", help="folder to save screen images (PNG) and spoken.txt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated scenes")
    parser.add_argument("--brightness", type=float, default=1.0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")

    vector = VirtualVector(
        args.serial,
        images=args.images,
        home=args.home,
        port=args.port,
        name=args.name,
        host=args.host,
        guid=args.guid,
        record_dir=args.record,
        seed=args.seed,
    )
    vector.set_scene(brightness=args.brightness)
    vector.start()
    control = serve_control_in_thread(vector, args.control_port)
    ready = {
        "serial": vector.serial,
        "name": vector.name,
        "port": vector.port,
        "control_url": f"http://127.0.0.1:{control.server_address[1]}",
        "sdk_config": str(vector.config_path),
    }
    print("READY " + json.dumps(ready), flush=True)

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    control.shutdown()
    vector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
