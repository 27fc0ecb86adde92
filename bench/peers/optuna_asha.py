"""Optuna's side of bench/automl-asha.mjs: the same simulated workers on the same learning
curves, pruned by optuna.pruners.SuccessiveHalvingPruner (min_resource 1, min early-stopping
rate 0). Trial n of Optuna's study runs curve n, so both sides see the same configurations.

Run with a Python that sees Debian's python3-optuna (`/usr/bin/python3`). Reads one JSON
object on stdin and prints one on stdout:

  in:  {"workers": 4, "maxResource": 81, "eta": 3,
        "seeds": [{"seed": 1, "target": 0.07, "curves": [[0, v1, ..., v81], ...],
                   "stepTimes": [0.9, ...]}, ...]}
  out: {"seconds": 12.3, "results": [{"seed": 1, "budget": 786, "trials": 96}, ...]}

budget is null when the target was not reached with the curves given.
"""

import json
import math
import sys
import time

import optuna
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)


def simulate(case, workers, max_resource, eta):
    """The event loop of bench/automl-asha.mjs, step for step."""
    curves, step_times, target = case["curves"], case["stepTimes"], case["target"]
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=eta, min_early_stopping_rate=0
    )
    study = optuna.create_study(pruner=pruner)
    slots = [None] * workers
    state = {"next": 0, "now": 0.0}

    def start(w):
        n = state["next"]
        if n >= len(curves):
            return
        state["next"] = n + 1
        trial = study.ask()
        assert trial.number == n
        slots[w] = {
            "trial": trial,
            "curve": curves[n],
            "step_time": step_times[n],
            "step": 0,
            "at": state["now"] + step_times[n],
        }

    for w in range(workers):
        start(w)
    budget = 0
    best = math.inf
    while True:
        w = -1
        for i in range(workers):
            if slots[i] is not None and (w < 0 or slots[i]["at"] < slots[w]["at"]):
                w = i
        if w < 0:
            return {"seed": case["seed"], "budget": None, "trials": state["next"]}
        slot = slots[w]
        state["now"] = slot["at"]
        slot["step"] += 1
        budget += 1
        value = slot["curve"][slot["step"]]
        slot["trial"].report(value, slot["step"])
        prune = slot["trial"].should_prune()
        if slot["step"] == max_resource:
            study.tell(slot["trial"], value)
            best = min(best, value)
            if best <= target:
                return {"seed": case["seed"], "budget": budget, "trials": state["next"]}
        elif prune:
            study.tell(slot["trial"], state=TrialState.PRUNED)
        else:
            slot["at"] = state["now"] + slot["step_time"]
            continue
        slots[w] = None
        start(w)


def main():
    spec = json.load(sys.stdin)
    started = time.perf_counter()
    results = [
        simulate(case, spec["workers"], spec["maxResource"], spec["eta"]) for case in spec["seeds"]
    ]
    json.dump({"seconds": time.perf_counter() - started, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
