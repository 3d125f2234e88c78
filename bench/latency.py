"""How stable is a candidate's measured latency? Repeats the worker's own measurement
(warm-up, then the median of repeated forward passes) many times per network and reports the
spread, so a user can choose sensible latency constraints and objectives.

    python -m bench.latency --json bench/out/latency.json
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from spaces import SPACES, make_space
from worker.training.cost import measure_latency_ms
from worker.training.trainer import pick_device


def spread(values: list[float]) -> dict[str, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median_ms": round(float(median), 4), "iqr_pct": round(float((q3 - q1) / median * 100), 2),
            "min_ms": round(min(values), 4), "max_ms": round(max(values), 4),
            "stdev_pct": round(statistics.stdev(values) / statistics.mean(values) * 100, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=5)
    parser.add_argument("--measurements", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = pick_device(args.device)
    rng = np.random.default_rng(0)
    rows = []
    for channels, cells in ((8, 1), (16, 5)):
        space = make_space(SPACES["nb201"].config(channels=channels, cells_per_stage=cells))
        for _ in range(args.networks):
            arch = space.sample(rng)
            model = space.build(arch, (3, 32, 32), 10).to(device)
            for batch in (1, 64):
                values = [measure_latency_ms(model, (3, 32, 32), batch, device) for _ in range(args.measurements)]
                rows.append({"network": f"nb201 C={channels} N={cells}", "arch": space.key(arch), "batch": batch,
                             **spread(values)})
                print(f"{rows[-1]['network']:18} batch {batch:3d} median {rows[-1]['median_ms']:9.3f} ms  "
                      f"IQR {rows[-1]['iqr_pct']:5.1f}%  stdev {rows[-1]['stdev_pct']:5.1f}%")
    report = {"device": device, "threads": torch.get_num_threads(), "input": [3, 32, 32],
              "measurements_per_network": args.measurements, "rows": rows,
              "median_iqr_pct": round(float(np.median([r["iqr_pct"] for r in rows])), 2)}
    print(f"median IQR across networks: {report['median_iqr_pct']}% of the median latency")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
