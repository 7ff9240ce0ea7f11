"""History import against the generator on the same records: `python -m bench.import_rate
[--count N] [--rounds R]`.

Throwaway Kafka on loopback. Per round, side by side on the same machine and broker:

  generate  `clickstream generate --fast --count N --jsonl FILE` into fresh topics: the
            simulation, encoding and producing, the floor of what a producer costs here
  import    `clickstream import` of the same records, shuffled, into other fresh topics:
            validation of every line, the sort by event time, producing

The report gives each round's rates (records / wall seconds of the command) and the median of
the rounds' import / generate ratios; the import must count every record valid.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import local_services
from generator.produce import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _cli(env: dict[str, str], *args: str) -> float:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "clickstream", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"clickstream {args[0]} failed: {done.stderr[-2000:]}")
    if args[0] == "import" and "rejected" in done.stdout:
        raise RuntimeError(f"the import rejected records: {done.stdout}")
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.import_rate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--count", type=int, default=200_000, help="generator records")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as home_text:
        home = Path(home_text)
        with local_services(home) as (kafka, _redis):
            base = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
            for round_ in range(1, args.rounds + 1):
                env = {**base, "CLICKSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
                       "CLICKSTREAM_REDIS_URL": "redis://127.0.0.1:1/0",  # not needed here
                       "CLICKSTREAM_VAR_DIR": str(home / "var")}  # fmt: skip
                jsonl = home / f"generated-{round_}.jsonl"
                generated = {**env, "CLICKSTREAM_CLICKS_TOPIC": f"gen{round_}-clicks",
                             "CLICKSTREAM_ORDERS_TOPIC": f"gen{round_}-orders"}  # fmt: skip
                generate = ("generate", "--fast", "--count", str(args.count), "--malformed", "0")
                generate_s = _cli(generated, *generate, "--no-progress", "--jsonl", str(jsonl))
                values = [line["value"].encode() for line in read_jsonl(jsonl)]
                random.Random(round_).shuffle(values)
                history = home / f"history-{round_}.jsonl"
                history.write_bytes(b"\n".join(values) + b"\n")
                imported = {**env, "CLICKSTREAM_CLICKS_TOPIC": f"imp{round_}-clicks",
                            "CLICKSTREAM_ORDERS_TOPIC": f"imp{round_}-orders"}  # fmt: skip
                import_s = _cli(imported, "import", str(history))
                ratios.append(generate_s / import_s)
                print(
                    f"round {round_}: generate {len(values) / generate_s:,.0f} rec/s, import "
                    f"{len(values) / import_s:,.0f} rec/s ({generate_s / import_s:.2f}x)",
                    flush=True,
                )
    print(f"median of {len(ratios)}, {args.count:,} records: import / generate "
          f"{statistics.median(ratios):.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
