"""The flags both runners take (``python -m tadist_utils`` and the sweep); a bad one is one line, ``error: ...``, exit 2,
answered before torch is imported."""
from __future__ import annotations

import argparse

from ..config import check_seeds, default_results_dir
from ..errors import ConfigError


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other bad input, not usage + error
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parser(prog: str, description: str, results_dir: str = default_results_dir("<profile>")) -> Parser:
    """A runner's parser holding the shared flags; ``results_dir``: the default its ``--help`` names."""
    ap = Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick", help="smoke | quick | reference | paper (default: quick)")
    ap.add_argument("--dataset", help="auto | cifar10 | cifar100 | imagefolder | digits (default: auto)")
    ap.add_argument("--data-dir", help="dataset folder (default: data)")
    ap.add_argument("--results-dir", help=f"default: {results_dir}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="run the whole sequence once per seed")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", nargs="+",
                    help="override any Config field, e.g. --set student_lr=2e-3 finetune_mode=all")
    return ap


def overrides(args: argparse.Namespace) -> dict:
    """The shared flags' settings, as strings for ``make_config``: ``--set``, then the named flags given (they win)."""
    check_seeds(args.seeds, "--seeds")
    out = {}
    for pair in (p for group in args.sets for p in group):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        if key in ("profile", "seed"):
            raise ConfigError(f"use --{key}{'s' if key == 'seed' else ''} instead of --set {key}=...")
        out[key.strip()] = value
    given = dict(dataset=args.dataset, data_dir=args.data_dir, results_dir=args.results_dir)
    return {**out, **{k: v for k, v in given.items() if v is not None}}
