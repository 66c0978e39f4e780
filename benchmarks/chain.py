"""Chain scale (issue 15): what one central registry for many stores must show.

One function per section; ``--only`` picks sections (default: all). Each
section prints its own table, with the naive alternative measured in the same
run where one exists. Sections:

* ``load``: 1,000 stores with 2 edge boxes each against one real
  ``mamoru serve`` on loopback (benchmarks/chain_load.py): index-version polls,
  status reports and alerts with bursts; p50/p99 per request kind, errors,
  CPU and memory of the server's processes and of the client, with one API
  worker (the naive baseline) and with several where ``mamoru serve`` has them.

Run: ``python -m benchmarks.chain --only load`` (a quick run: 250 stores, 30 s);
full scale: ``nice python -m benchmarks.chain --only load --stores 1000 --seconds 60``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from benchmarks import chain_load

SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "load": chain_load.section_load,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chain", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SECTIONS), help="sections to run (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    chain_load.add_load_arguments(parser)
    args = parser.parse_args(argv)
    chain_load.check_load_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for name in args.only or sorted(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
