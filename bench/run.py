"""`make bench`: every benchmark in bench/, one table each."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    ["bench/webp.py"],
    ["bench/api.py", "--backend", "instant"],
    ["bench/api.py", "--backend", "preview", "--levels", "1,8", "--requests", "200"],
    ["bench/concurrency.py", "--worker-classes", "gthread"],
    ["bench/enhance.py"],
    ["bench/runware.py"],
]

status = 0
for script in SCRIPTS:
    if not (ROOT / script[0]).exists():
        continue
    print(f"\n## {' '.join(script)}", flush=True)
    status |= subprocess.run([sys.executable, *script], cwd=ROOT).returncode
sys.exit(status)
