#!/usr/bin/env python3
"""An independent consumer for virtmeter's AMQP tests: an oslo.messaging notification listener, as ceilometer's
notification agent runs one, on exchange VIRTMETER_CHECK_EXCHANGE (ceilometer) and topic VIRTMETER_CHECK_TOPIC
(notifications). Receives samples until VIRTMETER_CHECK_COUNT arrived or VIRTMETER_CHECK_TIMEOUT seconds passed,
verifies each signature with VIRTMETER_CHECK_SECRET using ceilometer's own algorithm, and prints one JSON line:
{"samples": N, "messages": M, "event_types": [...], "priorities": [...], "publisher_ids": [...],
 "bad_signatures": B, "payload_keys": [...], "message_ids": [...], "counter_names": [...]}.
The broker URL (rabbit://user:password@host:port/) comes from VIRTMETER_CHECK_URL.
"""
import json
import threading
import time

from oslo_common import compute_signature, env, transport


class SampleEndpoint(object):
    def __init__(self, secret):
        self.secret = secret
        self.lock = threading.Lock()
        self.messages = 0
        self.samples = []
        self.event_types, self.priorities, self.publisher_ids, self.payload_keys = set(), set(), set(), set()
        self.bad = 0

    def sample(self, ctxt, publisher_id, event_type, payload, metadata):
        import oslo_messaging
        with self.lock:
            self.messages += 1
            self.event_types.add(event_type)
            self.priorities.add('SAMPLE')
            self.publisher_ids.add(publisher_id)
            self.payload_keys.update(payload.keys())
            for sample in payload.get('samples', []):
                self.samples.append(sample)
                if compute_signature(sample, self.secret) != sample.get('message_signature'):
                    self.bad += 1
        return oslo_messaging.NotificationResult.HANDLED


def main():
    import oslo_messaging
    exchange, topic = env('VIRTMETER_CHECK_EXCHANGE', 'ceilometer'), env('VIRTMETER_CHECK_TOPIC', 'notifications')
    want, timeout = int(env('VIRTMETER_CHECK_COUNT')), float(env('VIRTMETER_CHECK_TIMEOUT', '30'))
    endpoint = SampleEndpoint(env('VIRTMETER_CHECK_SECRET', ''))
    _, trans = transport(exchange, env('VIRTMETER_CHECK_URL'))
    targets = [oslo_messaging.Target(topic=topic, exchange=exchange)]
    listener = oslo_messaging.get_notification_listener(trans, targets, [endpoint], executor='threading')
    listener.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with endpoint.lock:
            if len(endpoint.samples) >= want:
                break
        time.sleep(0.1)
    listener.stop()
    listener.wait()
    trans.cleanup()
    print(json.dumps({
        'samples': len(endpoint.samples), 'messages': endpoint.messages,
        'event_types': sorted(endpoint.event_types), 'priorities': sorted(endpoint.priorities),
        'publisher_ids': sorted(endpoint.publisher_ids), 'payload_keys': sorted(endpoint.payload_keys),
        'bad_signatures': endpoint.bad, 'message_ids': [s.get('message_id') for s in endpoint.samples],
        'counter_names': sorted(set(s.get('counter_name') for s in endpoint.samples)),
    }))


if __name__ == '__main__':
    main()
