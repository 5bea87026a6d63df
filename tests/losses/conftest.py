"""Make the independent oracles (tests/losses/oracles.py) importable as ``oracles``."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
