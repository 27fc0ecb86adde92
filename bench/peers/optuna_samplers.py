"""Optuna's side of bench/automl-samplers.mjs and bench/automl-tpe-speed.mjs.

Run with a Python that sees Debian's python3-optuna (`/usr/bin/python3`). Prints one JSON
object on stdout.

  quality: best value after N trials for each seed, per function and sampler.
    /usr/bin/python3 bench/peers/optuna_samplers.py quality --samplers tpe,random \
        --functions branin,hartmann6,rosenbrock5 --seeds 20 --trials 100
  speed: time of `study.ask()` with the default TPESampler once a study holds N finished
    trials of 5 float parameters.
    /usr/bin/python3 bench/peers/optuna_samplers.py speed --sizes 100,500,1000 --suggests 50

The test functions and bounds match bench/automl-functions.mjs.
"""

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def branin(x):
    x1, x2 = x
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


HARTMANN6_ALPHA = [1.0, 1.2, 3.0, 3.2]
HARTMANN6_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
HARTMANN6_P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]


def hartmann6(x):
    total = 0.0
    for i in range(4):
        inner = sum(HARTMANN6_A[i][j] * (x[j] - HARTMANN6_P[i][j]) ** 2 for j in range(6))
        total += HARTMANN6_ALPHA[i] * math.exp(-inner)
    return -total


def rosenbrock(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


FUNCTIONS = {
    "branin": (branin, [(-5.0, 10.0), (0.0, 15.0)]),
    "hartmann6": (hartmann6, [(0.0, 1.0)] * 6),
    "rosenbrock5": (rosenbrock, [(-2.0, 2.0)] * 5),
}


def make_sampler(name, seed):
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SystemExit(f"unknown sampler {name!r}")


def quality(args):
    results = []
    for fname in args.functions.split(","):
        fn, bounds = FUNCTIONS[fname]
        for sname in args.samplers.split(","):
            bests = []
            t0 = time.perf_counter()
            for seed in range(args.seeds):
                study = optuna.create_study(sampler=make_sampler(sname, seed))

                def objective(trial):
                    x = [trial.suggest_float(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(bounds)]
                    return fn(x)

                study.optimize(objective, n_trials=args.trials)
                bests.append(study.best_value)
            results.append(
                {
                    "function": fname,
                    "sampler": sname,
                    "best": bests,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(f"{fname} {sname} done", file=sys.stderr)
    return {"optuna": optuna.__version__, "mode": "quality", "results": results}


def speed(args):
    dims = 5
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        sampler = optuna.samplers.TPESampler(seed=0)
        study = optuna.create_study(sampler=sampler)
        dist = {f"x{i}": optuna.distributions.FloatDistribution(-2.0, 2.0) for i in range(dims)}
        rng = np.random.RandomState(0)
        trials = []
        for _ in range(n):
            params = {k: float(rng.uniform(-2.0, 2.0)) for k in dist}
            trials.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions=dist,
                    value=rosenbrock([params[f"x{i}"] for i in range(dims)]),
                )
            )
        study.add_trials(trials)
        times = []
        for _ in range(args.suggests):
            t0 = time.perf_counter()
            trial = study.ask(dist)
            times.append((time.perf_counter() - t0) * 1000)
            # Failed trials are not seen by TPE, so the history stays at n finished trials.
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        rows.append({"trials": n, "medianMs": statistics.median(times), "timesMs": times})
    return {"optuna": optuna.__version__, "mode": "speed", "dims": dims, "rows": rows}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["quality", "speed"])
    parser.add_argument("--samplers", default="tpe,random")
    parser.add_argument("--functions", default="branin,hartmann6,rosenbrock5")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--suggests", type=int, default=50)
    args = parser.parse_args()
    out = quality(args) if args.mode == "quality" else speed(args)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
