"""ceilometer's own Prometheus exporter (ceilometer.polling.prom_exporter, from PyPI) fed samples: the reference
virtmeter's GET /metrics is compared with (Tests/VirtMeterPrometheusTests).

Reads sample dicts, one JSON object a line, on stdin; writes what prometheus_client's generate_latest makes of
CEILOMETER_REGISTRY after collect_metrics. prometheus_client refuses a sample whose label names differ from those
of its family's first sample (ceilometer then loses the batch): such samples are fed in a later round, to an
emptied registry, and the rounds' outputs are written one after the other. Without such samples there is one
round, and the output is exactly ceilometer's.
"""
import json
import sys

import prometheus_client
from ceilometer.polling import prom_exporter


def main():
    samples = [json.loads(line) for line in sys.stdin if line.strip()]
    families = {}
    rounds = []
    for sample in samples:
        keys = tuple(prom_exporter._gen_labels(sample)['keys'])
        known = families.setdefault(sample['counter_name'], [])
        if keys not in known:
            known.append(keys)
        index = known.index(keys)
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(sample)
    out = sys.stdout.buffer
    for group in rounds:
        registry = prom_exporter.CEILOMETER_REGISTRY
        for collector in list(registry._collector_to_names):
            registry.unregister(collector)
        prom_exporter.collect_metrics(group)
        out.write(prometheus_client.generate_latest(registry))
    out.flush()


if __name__ == '__main__':
    main()
