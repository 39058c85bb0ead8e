#!/usr/bin/env python3
"""Renders the Grafana dashboard's panels from a live Prometheus into one PNG.

Grafana itself cannot be built here, so this draws each panel of
deploy/chart/files/zookeeper-dashboard.json where its gridPos puts it, from the same queries
run against Prometheus' HTTP API: stat panels show the last value, tables the last values by
label, time series the range. It is a faithful picture of what the dashboard shows, not of how
Grafana styles it.

  scripts/render-dashboard.py PROMETHEUS_URL NAMESPACE CLUSTER OUT.png [MINUTES]

Needs matplotlib (pip install matplotlib).
"""
import json
import math
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def query(base, path, params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise SystemExit(f"{url}: {body}")
    return body["data"]["result"]


def legend(template, labels):
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def short(value, unit):
    if value is None or math.isnan(value):
        return "NaN"
    if unit == "bytes":
        for suffix in ["B", "KiB", "MiB", "GiB"]:
            if abs(value) < 1024:
                return f"{value:.1f} {suffix}"
            value /= 1024
    if unit == "percentunit":
        return f"{value * 100:.1f} %"
    if unit == "s":
        return f"{value:.0f} s"
    return f"{value:.3g}"


def main():
    base, namespace, cluster, out = sys.argv[1:5]
    minutes = int(sys.argv[5]) if len(sys.argv) > 5 else 15
    root = Path(__file__).resolve().parent.parent
    dashboard = json.loads((root / "deploy/chart/files/zookeeper-dashboard.json").read_text())
    end = time.time()
    start = end - minutes * 60

    def substitute(expr):
        return (
            expr.replace("$namespace", namespace)
            .replace("$cluster", cluster)
            .replace("$__rate_interval", "1m")
        )

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(24, rows * 0.4 + 1))
    top = 1 - 1 / (rows * 0.4 + 1)  # room for the title
    figure.suptitle(
        f"{dashboard['title']}: {namespace}/{cluster}, last {minutes} minutes "
        f"(rendered by scripts/render-dashboard.py from live Prometheus data)",
        fontsize=14,
        y=0.998,
    )
    for panel in panels:
        g = panel["gridPos"]
        left, width = g["x"] / 24, g["w"] / 24
        bottom, height = top * (1 - (g["y"] + g["h"]) / rows), top * g["h"] / rows
        ax = figure.add_axes([left + 0.006, bottom + height * 0.12, width - 0.012, height * 0.72])
        if panel["type"] == "row":
            ax.axis("off")
            ax.text(0, 0.2, panel["title"], fontsize=13, weight="bold")
            continue
        ax.set_title(panel["title"], fontsize=10, loc="left")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if panel["type"] in ("stat", "table"):
            ax.axis("off")
            lines = []
            for target in panel["targets"]:
                for series in query(base, "/api/v1/query", {"query": substitute(target["expr"])}):
                    value = float(series["value"][1])
                    lines.append((legend(target.get("legendFormat", ""), series["metric"]), value))
            size = 18 if panel["type"] == "stat" and len(lines) <= 2 else 9
            for i, (name, value) in enumerate(lines[:8]):
                shown = name if panel["type"] == "table" else f"{short(value, unit)}  {name}"
                ax.text(0.02, 0.8 - i * 0.22 * (18 / size) / 2, shown, fontsize=size)
            continue
        for target in panel["targets"]:
            params = {"query": substitute(target["expr"]), "start": start, "end": end, "step": 15}
            for series in query(base, "/api/v1/query_range", params):
                xs = [(float(t) - end) / 60 for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, linewidth=1, label=legend(target.get("legendFormat", ""), series["metric"]))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("minutes", fontsize=7)
        if unit:
            ax.set_ylabel(unit, fontsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left", ncol=2)
    figure.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
