"""Lesson 06's capstone rule: how often it fails a right configuration and passes a wrong one.

The grade of ``capstone_config`` trains the student's configuration on five seeds and applies
:func:`stabletrain.exercises.layernorm.capstone_verdict`: a seed trains stably if its last-10 loss
is below 0.25, it does not diverge and clipping acts on at most 15 % of its steps; the visible check
(seeds 0-4) asks 4 of 5 seeds and a median loss below 0.15, the grader (five seeds of its own) 3 of
5. This script trains each configuration of :data:`CONFIGS` on many seeds (natively and with the
claims tests' 1e-6 weight jitter), then estimates, by drawing disjoint sets of five seeds,

- P(hidden): how often the grader's rule passes the configuration,
- P(visible): how often the stricter visible rule passes it,
- P(visible and not hidden): how often a passing self-check does not predict the grade.

The numbers are quoted in the lesson's capstone notes (instructor). About 10 CPU minutes for 40
seeds with the jittered run, half that with ``--native-only``:

    .venv/bin/python benchmarks/capstone_rule_06.py --seeds 40 --out /tmp/capstone_rule.json

Measured on seeds 0-39 natively (2026-12-07, --native-only; the visible check on seeds 0-4, the
grader on 4000 random five-seed sets of seeds 5-39):

- taught (reference, zero gamma, Xavier + zero gamma): visible passes; the grader fails 0 of 4000;
- wrong (defaults, no residual, no norm, post-norm, max_norm 1, Section 5's clip at 1): visible
  fails; the grader passes 0 of 4000;
- between, visible passing: 1/sqrt(L), zero gamma without clipping, SkipInit, default init + zero
  gamma without clipping: the grader fails 0.05-0.22 %; Xavier with clip 4: 1.3 %;
- between, visible failing: no clipping, default init, small init (the grader: 83 %, 94 %, 41 %).
- over random disjoint pairs (another machine's seeds 0-4): P(visible and not hidden) <= 0.3 % for
  all but no clipping (9.8 %), default init (6.8 %), Xavier clip 4 (1.3 %), small init (1.1 %).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from stabletrain.exercises.layernorm import CAPSTONE_SEEDS, capstone_verdict
from stabletrain.lessons import residual_lab as lab
from stabletrain.perturb import JITTER
from stabletrain.residual import capstone_config

C = lab.CapstoneConfig
REF = capstone_config()

#: name -> (configuration, what the course says about it)
CONFIGS = {
    "reference": (C(**REF), "taught"),
    "zero gamma": (C(**{**REF, "scaling": "zero_gamma"}), "taught"),
    "zero gamma, no clipping": (C(**{**REF, "scaling": "zero_gamma", "clip": None}), "taught"),
    "Xavier, zero gamma": (C(**{**REF, "init": "xavier", "scaling": "zero_gamma"}), "taught"),
    "1/sqrt(L)": (C(**{**REF, "scaling": "gpt2"}), "taught"),
    "no clipping": (C(**{**REF, "clip": None}), "between"),
    "SkipInit: no norm, zero gamma": (C(**{**REF, "norm": "none", "scaling": "zero_gamma"}), "between"),
    "default init, zero gamma, no clipping": (C(**{**REF, "init": "default", "scaling": "zero_gamma", "clip": None}),
                                              "between"),
    "default init": (C(**{**REF, "init": "default"}), "between"),
    "small init": (C(**{**REF, "init": "small"}), "between"),
    "no residual": (C(**{**REF, "residual": False}), "wrong"),
    "no norm": (C(**{**REF, "norm": "none", "clip": None}), "wrong"),
    "post-norm": (C(**{**REF, "placement": "post"}), "wrong"),
    "max_norm 1": (C(**{**REF, "clip": 1.0}), "wrong"),
    "Section 5: default init, no norm, clip 1": (C(init="default", residual=True, clip=1.0), "wrong"),
    "defaults": (C(), "wrong"),
}


def summaries(seeds: tuple[int, ...], jitter: float) -> dict[str, dict]:
    return {name: lab.capstone_summary(cfg, seeds, jitter) for name, (cfg, _) in CONFIGS.items()}


def rates(summary: dict, draws: int = 4000, rng: np.random.Generator | None = None) -> dict[str, float]:
    """P(hidden), P(visible), P(visible and not hidden) over disjoint pairs of five-seed sets."""
    rng = rng or np.random.default_rng(0)
    n = len(summary["seeds"])
    pick = lambda idx: {k: [v[i] for i in idx] for k, v in summary.items()}  # noqa: E731
    v = h = vh = 0
    for _ in range(draws):
        perm = rng.permutation(n)
        vis = capstone_verdict(pick(perm[:CAPSTONE_SEEDS]), "visible") is None
        hid = capstone_verdict(pick(perm[CAPSTONE_SEEDS:2 * CAPSTONE_SEEDS]), "hidden") is None
        v, h, vh = v + vis, h + hid, vh + (vis and not hid)
    return {"hidden": h / draws, "visible": v / draws, "visible_not_hidden": vh / draws}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--out", default="")
    parser.add_argument("--native-only", action="store_true", help="skip the jittered run (half the time)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = tuple(range(100, 100 + args.seeds))  # none of the lesson's or the claims tests' seeds
    started = time.process_time()
    runs = {"native": summaries(seeds, 0.0)}
    if not args.native_only:
        runs["jitter"] = summaries(seeds, JITTER)
    report = {}
    for name, (_, verdict) in CONFIGS.items():
        both = {k: sum((run[name][k] for run in runs.values()), []) for k in runs["native"][name]}
        report[name] = {"course": verdict, "median_last10": float(np.median(both["last10"])),
                        "median_clipped": float(np.median(both["clipped"])), **rates(both)}
        r = report[name]
        print(f"{name:42s} {verdict:8s} P(hidden) {r['hidden']:.3f}  P(visible) {r['visible']:.3f}  "
              f"P(visible, not hidden) {r['visible_not_hidden']:.3f}  median loss {r['median_last10']:.3f}  "
              f"clipped {r['median_clipped']:.2f}", flush=True)
    print(f"{time.process_time() - started:.0f} s CPU")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"seeds": list(seeds), "runs": runs, "report": report}, f)


if __name__ == "__main__":
    main()
