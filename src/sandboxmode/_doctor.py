"""What ``sbm doctor`` reports: kernel features probed by trying them, and the level."""

from __future__ import annotations

import dataclasses
from typing import Any


def report() -> dict[str, Any]:
    from sandboxmode._lockdown import probe
    from sandboxmode._spawner import strong_available
    from sandboxmode.policy import Policy

    features = probe.detect()
    missing = strong_available(Policy())
    feats = {k: v for k, v in dataclasses.asdict(features).items()}
    missing += [m for m in probe.missing_for_strong(features) if m not in missing]
    return {"features": feats, "missing": missing,
            "level": "STRONG" if not missing else "WEAK"}
