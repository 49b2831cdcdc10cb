#!/usr/bin/env python3
"""The peer of `virtmeter benchmark-amqp`: signs and publishes the same samples as ceilometer's polling agent does,
through oslo.messaging's Notifier (rabbit driver, publisher confirms as oslo sets them), in batches.

Environment: VIRTMETER_BENCH_URL (rabbit://user:password@host:port/), VIRTMETER_BENCH_FILE (sample dicts, one JSON
object a line), VIRTMETER_BENCH_EXCHANGE, VIRTMETER_BENCH_TOPIC, VIRTMETER_BENCH_BATCH, VIRTMETER_BENCH_SECRET.
Prints one JSON line: {"samples": N, "seconds": S, "cpu_seconds": C}.
"""
import json
import resource
import time

from oslo_common import compute_signature, env, transport


def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    import oslo_messaging
    exchange, topic = env('VIRTMETER_BENCH_EXCHANGE', 'ceilometer'), env('VIRTMETER_BENCH_TOPIC')
    batch_size, secret = int(env('VIRTMETER_BENCH_BATCH', '50')), env('VIRTMETER_BENCH_SECRET', '')
    with open(env('VIRTMETER_BENCH_FILE')) as f:
        samples = [json.loads(line) for line in f if line.strip()]
    _, trans = transport(exchange, env('VIRTMETER_BENCH_URL'))
    notifier = oslo_messaging.Notifier(trans, driver='messagingv2', publisher_id='ceilometer.polling',
                                       topics=[topic])
    # Warm up: connect and declare.
    notifier.sample({}, event_type='telemetry.polling', payload={'samples': samples[:1]})
    wall, cpu0 = time.monotonic(), cpu()
    # As ceilometer's polling manager and messaging publisher do: sign each sample, send batches of batch_size.
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        for sample in batch:
            sample['message_signature'] = compute_signature(sample, secret)
        notifier.sample({}, event_type='telemetry.polling', payload={'samples': batch})
    seconds, cpu_seconds = time.monotonic() - wall, cpu() - cpu0
    # Leave no queue behind on the broker.
    conn = trans._driver._get_connection()
    try:
        conn.connection.default_channel.queue_delete(topic + '.sample')
    except Exception:
        pass
    trans.cleanup()
    print(json.dumps({'samples': len(samples), 'seconds': seconds, 'cpu_seconds': cpu_seconds}))


if __name__ == '__main__':
    main()
