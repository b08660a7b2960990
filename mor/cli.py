"""The ``mor`` command."""

from __future__ import annotations

import argparse

from mor.demo import run_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mor", description="Long FIR filters to compact "
                                     "state-space models.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="spectrum, reductions and errors beside the bounds on "
                          "the embedded Hyena-like filters")
    demo.add_argument("--filters", type=int, default=32, help="number of filters (32)")
    demo.add_argument("--length", type=int, default=512, help="filter length L (512)")
    demo.add_argument("--orders", type=int, nargs="+", default=[4, 8, 16, 32],
                      help="orders to reduce to (4 8 16 32)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo(args.filters, args.length, tuple(args.orders))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
