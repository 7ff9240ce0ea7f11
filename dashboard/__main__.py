"""`python -m dashboard`: serve the dashboard with settings from the environment and `.env`.

A bad setting, an unreachable Redis or a taken port ends it with one line on stderr and exit 2;
Ctrl-C or SIGTERM stop it cleanly with exit 0.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from clickstream import settings
from dashboard.app import StartupError, serve


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    try:
        serve(settings.load())
    except (settings.SettingsError, StartupError) as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
