#!/usr/bin/env python3
"""Scheduler overhead of Optuna: no-op trials through its SQLite (RDB) storage.

The study lives in a temporary SQLite file. N worker processes each run
`optuna.load_study(...).optimize(noop, n_trials=...)` on the same study; the objective
suggests two parameters and returns 0.0 at once, so the time measured is Optuna's own:
sampler, storage and process start. Trials per second run end to end, from study
creation until every worker has finished.

    /usr/bin/python3 bench/peers/optuna_trials.py --trials 500 --workers 2 --sampler both --json

Prints one line per sampler (random first: it measures storage and scheduling alone; TPE
adds its model), or with --json one JSON object per line:
{"system": "optuna", "version", "sampler", "trials", "workers", "seconds", "trialsPerSec"}.
"""
import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time

import optuna

STUDY = "overhead"


def storage_for(url):
    # Two processes write to one SQLite file: wait for its lock instead of failing.
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def make_sampler(name, seed):
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def noop(trial):
    trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    trial.suggest_categorical("optimizer", ["sgd", "adam"])
    return 0.0


def worker(url, sampler, seed, n_trials):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=STUDY, storage=storage_for(url), sampler=make_sampler(sampler, seed)
    )
    study.optimize(noop, n_trials=n_trials)


def run(sampler, trials, workers):
    with tempfile.TemporaryDirectory(prefix="optuna-bench-") as tmp:
        url = f"sqlite:///{os.path.join(tmp, 'study.db')}"
        shares = [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]
        ctx = multiprocessing.get_context("fork")
        start = time.perf_counter()
        optuna.create_study(study_name=STUDY, storage=storage_for(url), direction="minimize")
        procs = [
            ctx.Process(target=worker, args=(url, sampler, seed, n))
            for seed, n in enumerate(shares)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        seconds = time.perf_counter() - start
        if any(p.exitcode != 0 for p in procs):
            sys.exit(f"optuna_trials: a worker failed (exit codes {[p.exitcode for p in procs]})")
        done = optuna.load_study(study_name=STUDY, storage=storage_for(url)).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
        )
        if len(done) != trials:
            sys.exit(f"optuna_trials: expected {trials} complete trials, found {len(done)}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sampler", choices=["random", "tpe", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="one JSON object per sampler")
    args = parser.parse_args()
    if args.trials < 1 or args.workers < 1:
        parser.error("--trials and --workers must be at least 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    for sampler in ["random", "tpe"] if args.sampler == "both" else [args.sampler]:
        seconds = run(sampler, args.trials, args.workers)
        rate = args.trials / seconds
        if args.json:
            print(json.dumps({
                "system": "optuna",
                "version": optuna.__version__,
                "sampler": sampler,
                "trials": args.trials,
                "workers": args.workers,
                "seconds": round(seconds, 3),
                "trialsPerSec": round(rate, 1),
            }), flush=True)
        else:
            print(f"optuna {optuna.__version__} {sampler:6} {args.trials} trials, "
                  f"{args.workers} workers: {seconds:.2f} s, {rate:.1f} trials/s", flush=True)


if __name__ == "__main__":
    main()
