#!/usr/bin/env bash
# Runs every AutoML benchmark one after the other (never two at once, so they do not compete
# for the cores) and keeps their output together in bench/results/automl-all.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results/automl-all.txt
{
  echo "# qtune AutoML benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# $(node -p "require('os').cpus()[0].model + ' x ' + require('os').cpus().length"), Node $(node --version), $(/usr/bin/python3 -c 'import optuna; print("Optuna", optuna.__version__)')"
  for b in automl-samplers automl-tpe-speed automl-trials automl-asha; do
    echo
    echo "## node bench/$b.mjs"
    node "bench/$b.mjs" 2>/dev/null
  done
} | tee "$out"
