#!/usr/bin/env python3
"""A trial as a command in any language: parameters arrive as {placeholders} on the command
line (and as JSON in $QTUNE_PARAMS); intermediate metrics go to stdout behind QTUNE_REPORT,
the final value behind QTUNE_RESULT."""
import json
import sys
import time

x, y = float(sys.argv[1]), float(sys.argv[2])
for step in range(1, 4):
    time.sleep(0.01)
    print("QTUNE_REPORT " + json.dumps({"step": step, "loss": (x - 1) ** 2 + (y + 2) ** 2 + 1 / step}), flush=True)
print("QTUNE_RESULT " + json.dumps({"loss": (x - 1) ** 2 + (y + 2) ** 2}))
