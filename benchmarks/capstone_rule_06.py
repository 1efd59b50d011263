"""Lesson 06's capstone rule: how often it fails a right configuration and passes a wrong one.

The grade of ``capstone_config`` trains the student's configuration on five seeds and applies
:func:`stabletrain.exercises.layernorm.capstone_verdict`: no seed may diverge, and no step of any
seed may apply a gradient of global norm above 6 (after clipping: an unclipped spike); a seed
trains stably if its last-10 loss is below 0.25 (the grader: 0.35) and clipping acts on at most
15 % of its steps; the visible check (seeds 0-4) asks 4 of 5 such seeds and a median loss below
0.15, the grader (five seeds of its own) 3 of 5. This script trains each configuration of
:data:`CONFIGS` on many seeds (natively and with the claims tests' 1e-6 weight jitter), then
estimates, by drawing disjoint sets of five seeds,

- P(hidden): how often the grader's rule passes the configuration,
- P(visible): how often the stricter visible rule passes it,
- P(visible and not hidden): how often a passing self-check does not predict the grade,

and prints, per configuration, the range of the largest gradient norm a step applied. The numbers
are quoted in the lesson's capstone notes (instructor) and in benchmarks/README.md. About 10 CPU
minutes for 60 seeds with the jittered run, half that with ``--native-only``; run it once more
with ``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE`` exported for the other kernels:

    .venv/bin/python benchmarks/capstone_rule_06.py --seeds 60 --out /tmp/capstone_rule.json

Measured 2026-12-08 (the grader on 4000 random five-seed sets, disjoint from the visible check's
five): natively on seeds 100-159 plus the jittered run of the same seeds (120 seed-runs), and on
seeds 100-139 with ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE exported (--native-only):

- taught (reference, zero gamma, Xavier + zero gamma, 1/sqrt(L), all clipped at 5): the grader
  fails 0 of 4000 sets (false-fail 0); the visible rule passes 99.2-100 % of sets (1/sqrt(L):
  91-96 %: its median seed sits near 0.15);
- no safety net (pre-norm without clipping = Section 7's run, zero gamma without clipping,
  default init + zero gamma without clipping): the largest gradient norm a step applies is
  4.5-20.8 and above 6 on 70-95 % of seeds; the grader passes 0-0.1 % of sets (false-pass), the
  visible rule 0-0.2 %;
- wrong (defaults, no residual, no norm, post-norm, max_norm 1, Section 5's clip at 1): both rules
  fail every set;
- between: SkipInit (grader passes 99.9-100 %, visible 83-91 %), default init clipped at 5 (99.7-100 %,
  57-68 %), small init (54-59 %, 0.6-1.3 %).
- P(visible and not hidden), the self-check that does not predict the grade: 0 for every taught,
  wrong and no-safety-net configuration except default init + zero gamma without clipping
  (0.05 % native, 0.15 % default kernels); SkipInit 0-0.15 %, default init 0-0.27 %, small init
  0.27 % native and 0.60 % with the default kernels (the largest; it passes the visible rule on
  at most 1.3 % of sets). Before the spike condition and the grader's 0.35: pre-norm without
  clipping 9.8 % (seeds 0-39; 4.4 % on seeds 100-159), default init 6.8 % (1.3 % with the default
  kernels on 100-129).
- The loss's jumps cannot replace the spike condition: the largest rise of the loss above its
  lowest value after step 30 is 0.11-1.9 for the reference (median 0.48-0.49) and 0.19-2.4 without
  clipping (median 0.75-0.77; seeds 100-159 natively, 100-129 with the default kernels, from the
  same training); a clip at 5 bounds the step, not the rise of a chaotic loss.
- CPU: 564 s for the native + jittered 60 seeds, 352 s for the default-kernel 40 seeds (getrusage
  of the process; the machine was loaded).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from stabletrain.exercises.layernorm import CAPSTONE_SEEDS, CAPSTONE_SPIKE, capstone_verdict
from stabletrain.lessons import residual_lab as lab
from stabletrain.perturb import JITTER
from stabletrain.residual import capstone_config

C = lab.CapstoneConfig
REF = capstone_config()

#: name -> (configuration, what the course says about it); the three without clipping are "wrong" since
#: the rule asks for a safety net: their gradient norm spikes unclipped (see capstone_verdict)
CONFIGS = {
    "reference": (C(**REF), "taught"),
    "zero gamma": (C(**{**REF, "scaling": "zero_gamma"}), "taught"),
    "zero gamma, no clipping": (C(**{**REF, "scaling": "zero_gamma", "clip": None}), "wrong"),
    "Xavier, zero gamma": (C(**{**REF, "init": "xavier", "scaling": "zero_gamma"}), "taught"),
    "1/sqrt(L)": (C(**{**REF, "scaling": "gpt2"}), "taught"),
    "no clipping": (C(**{**REF, "clip": None}), "wrong"),  # Section 7's pre-norm run
    "SkipInit: no norm, zero gamma": (C(**{**REF, "norm": "none", "scaling": "zero_gamma"}), "between"),
    "default init, zero gamma, no clipping": (C(**{**REF, "init": "default", "scaling": "zero_gamma", "clip": None}),
                                              "wrong"),
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
        spikes = np.array(both["max_step_norm"])
        report[name] = {"course": verdict, "median_last10": float(np.median(both["last10"])),
                        "median_clipped": float(np.median(both["clipped"])),
                        "max_step_norm": [float(spikes.min()), float(np.median(spikes)), float(spikes.max())],
                        "spiked": float(np.mean(~(spikes <= CAPSTONE_SPIKE))), **rates(both)}
        r = report[name]
        print(f"{name:42s} {verdict:8s} P(hidden) {r['hidden']:.3f}  P(visible) {r['visible']:.3f}  "
              f"P(visible, not hidden) {r['visible_not_hidden']:.4f}  median loss {r['median_last10']:.3f}  "
              f"clipped {r['median_clipped']:.2f}  largest step norm {spikes.min():.3g}-{spikes.max():.3g} "
              f"(above {CAPSTONE_SPIKE:g} on {r['spiked']:.0%} of seeds)", flush=True)
    print(f"{time.process_time() - started:.0f} s CPU")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"seeds": list(seeds), "runs": runs, "report": report}, f)


if __name__ == "__main__":
    main()
