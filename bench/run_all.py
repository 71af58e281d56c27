"""Runs every benchmark under bench/ one after another (``make bench``); each prints its own figures."""

import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    failed = []
    for script in sorted(glob.glob(os.path.join(HERE, "*.py"))):
        if os.path.basename(script) in ("run_all.py",) or os.path.basename(script).startswith("_"):
            continue
        print(f"\n=== {os.path.basename(script)} ===", flush=True)
        if subprocess.run([sys.executable, script], cwd=os.path.dirname(HERE)).returncode != 0:
            failed.append(os.path.basename(script))
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
