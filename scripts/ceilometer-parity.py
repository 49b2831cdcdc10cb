"""The differential test's two halves, run with a virtualenv holding ceilometer and libvirt-python from PyPI.

  ceilometer-parity.py poll --uri URI --host NAME --out FILE [--report-stopped] [--secret S]
      runs ceilometer's own libvirt discovery (instance_discovery_method libvirt_metadata) and every compute
      pollster of its `ceilometer.poll.compute` entry points in-process, once, against URI, and writes the samples
      as ceilometer's polling manager puts them on the bus (publisher.utils.meter_message_from_counter) to FILE,
      one JSON object a line (ceilometer's own log goes to the terminal). No keystone or nova API: the only nova
      look-up this path can make (a flavor id missing from old metadata) answers "not found", so ceilometer falls
      back to the flavor's name, as it does then.

  ceilometer-parity.py compare CEILOMETER.jsonl VIRTMETER.jsonl [--context NAME]
      pairs every ceilometer sample with virtmeter's sample of the same meter and resource, compares them key for
      key (configuration values exactly, moving counters within the tolerances below), prints the table and exits
      1 on any difference that ALLOWED does not list (2 when the only problem is that the two polls were more than
      a second apart: the caller tries again).
"""
import argparse
import datetime
import json
import os
import sys

# Differences the test allows, each with its reason: (context, meter, what) -> reason. context "*" is any run;
# what is "missing" (virtmeter has no twin), "counter_volume" or "resource_metadata.KEY".
ALLOWED = {
    ("test-driver", "cpu", "counter_volume"):
        "libvirt 9's test driver answers the bulk stats call with state.* only: ceilometer reads cpu from it alone "
        "and sends 0; virtmeter falls back to virDomainGetInfo's cpuTime",
    ("test-driver", "cpu", "resource_metadata.cpu_number"):
        "the same: ceilometer takes cpu_number from the bulk vcpu.current the test driver lacks (null); virtmeter "
        "from virDomainGetInfo",
    ("*", "memory.available", "missing"):
        "a memballoon without a stats period: QEMU repeats the guest's boot-time figures for ever; virtmeter drops "
        "them (README: where virtmeter deliberately differs)",
    ("*", "memory.usage", "missing"):
        "the same balloon without a stats period",
    ("*", "memory.swap.in", "missing"):
        "the same balloon without a stats period",
    ("*", "memory.swap.out", "missing"):
        "the same balloon without a stats period",
}
# Only for a guest whose memballoon has no stats period: the four "missing" entries above apply to such guests
# alone; the compare step is told their names with --stats-off.

# Moving counters: meter -> (absolute, relative) tolerance; the larger applies. Everything else must be equal.
MOVING = {
    "cpu": (3e9, 0.0),   # two reads up to 1 s apart of a guest that may burn its vCPU: 1 s, plus 2 s of slack
    "memory.resident": (0, 0.05),
    "memory.usage": (0, 0.05),
    "memory.available": (0, 0.05),
    "disk.device.allocation": (0, 0.05),
    "disk.device.usage": (0, 0.05),
}
for _meter in ("disk.device.read.bytes", "disk.device.write.bytes"):
    MOVING[_meter] = (1 << 20, 0.05)
for _meter in ("disk.device.read.requests", "disk.device.write.requests"):
    MOVING[_meter] = (256, 0.05)
for _meter in ("disk.device.read.latency", "disk.device.write.latency"):
    MOVING[_meter] = (1e9, 0.05)
for _direction in ("incoming", "outgoing"):
    MOVING["network.%s.bytes" % _direction] = (64 << 10, 0.05)
    for _kind in ("packets", "packets.drop", "packets.error"):
        # libvirt's test driver makes every interface counter grow with time, drops and errors too
        MOVING["network.%s.%s" % (_direction, _kind)] = (256, 0.05)
for _meter in ("perf.cpu.cycles", "perf.instructions", "perf.cache.references", "perf.cache.misses"):
    MOVING[_meter] = (0, 0.5)

# Keys that differ between any two runs by design: ids, clocks and what is computed from them.
PER_RUN_KEYS = {"message_id", "monotonic_time", "message_signature", "timestamp"}


def poll(args):
    from ceilometer.compute import discovery
    from ceilometer.publisher import utils as publisher_utils
    from ceilometer import service
    from stevedore import extension
    import time

    conf = service.prepare_service(["ceilometer-parity"], [])
    conf.set_override("host", args.host)
    conf.set_override("libvirt_uri", args.uri)
    conf.set_override("instance_discovery_method", "libvirt_metadata", "compute")
    conf.set_override("report_stopped_instance_metrics", args.report_stopped, "compute")
    conf.set_override("telemetry_secret", args.secret, "publisher")
    # The nova API stand-in: a flavor id missing from old metadata is "not found", as with a deleted flavor.
    discovery.InstanceDiscovery.get_flavor_id = lambda self, name: None

    pollsters = extension.ExtensionManager(namespace="ceilometer.poll.compute", invoke_on_load=True,
                                           invoke_args=(conf,))
    instances = discovery.InstanceDiscovery(conf).discover(manager=None)
    if args.ready:
        # Set up and discovered: tell the caller, which starts virtmeter's poll, and poll the moment virtmeter's
        # samples appear (ceilometer takes seconds to start, virtmeter milliseconds).
        open(args.ready, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(args.after) or os.path.getsize(args.after) == 0:
            if time.monotonic() > deadline:
                raise SystemExit("ceilometer-parity: no samples from virtmeter in %s after 60 s" % args.after)
            time.sleep(0.005)
    cache = {}
    timestamp = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat()
    out = []
    for ext in sorted(pollsters, key=lambda e: e.name):
        try:
            samples = list(ext.obj.get_samples(manager=None, cache=cache, resources=instances))
        except Exception as error:  # a pollster the libvirt inspector does not implement (the .rate ones)
            print("ceilometer-parity: pollster %s: %s" % (ext.name, type(error).__name__), file=sys.stderr)
            continue
        for sample in samples:
            sample.set_timestamp(timestamp)
            out.append(publisher_utils.meter_message_from_counter(sample, args.secret))
    with open(args.out, "w") as file:
        for message in out:
            file.write(json.dumps(message) + "\n")
    print("ceilometer-parity: %d instances, %d samples" % (len(instances), len(out)), file=sys.stderr)


def within(meter, a, b):
    absolute, relative = MOVING.get(meter, (0, 0))
    return abs(a - b) <= max(absolute, relative * max(abs(a), abs(b)))


def compare(args):
    ceilometer = [json.loads(line) for line in open(args.ceilometer) if line.strip()]
    virtmeter = [json.loads(line) for line in open(args.virtmeter) if line.strip()]
    twins = {}
    for sample in virtmeter:
        twins.setdefault((sample["counter_name"], sample["resource_id"]), []).append(sample)
    stats_off = set(args.stats_off.split(",")) if args.stats_off else set()
    meters = {}
    failures, allowed_seen, allowed_hits = [], {}, []

    def allow(meter, what, sample):
        for context in (args.context, "*"):
            reason = ALLOWED.get((context, meter, what))
            if reason and (context != "*" or sample["resource_metadata"].get("name") in stats_off):
                allowed_seen[(meter, what)] = reason
                allowed_hits.append((meter, what))
                return True
        return False

    times = []
    for sample in ceilometer:
        meter = sample["counter_name"]
        row = meters.setdefault(meter, {"ceilometer": 0, "equal": 0, "allowed": 0, "moving": meter in MOVING})
        row["ceilometer"] += 1
        candidates = twins.get((meter, sample["resource_id"]), [])
        if not candidates:
            if allow(meter, "missing", sample):
                row["allowed"] += 1
            else:
                failures.append("%s %s: no virtmeter twin" % (meter, sample["resource_id"]))
            continue
        twin = candidates.pop(0)
        problems = []
        allowed_before = len(allowed_hits)
        for key in sorted(set(sample) | set(twin)):
            if key in PER_RUN_KEYS:
                continue
            a, b = sample.get(key, "<absent>"), twin.get(key, "<absent>")
            if key == "counter_volume":
                if type(a) is not type(b) and not allow(meter, key, sample):
                    problems.append("counter_volume type %s vs %s" % (type(a).__name__, type(b).__name__))
                elif not within(meter, a, b) and not allow(meter, key, sample):
                    problems.append("counter_volume %r vs %r" % (a, b))
            elif key == "resource_metadata":
                for mkey in sorted(set(a) | set(b)):
                    ma, mb = a.get(mkey, "<absent>"), b.get(mkey, "<absent>")
                    if ma != mb and not allow(meter, "resource_metadata." + mkey, sample):
                        problems.append("resource_metadata.%s %r vs %r" % (mkey, ma, mb))
            elif a != b:
                problems.append("%s %r vs %r" % (key, a, b))
        times.append(abs(datetime.datetime.fromisoformat(sample["timestamp"])
                         - datetime.datetime.fromisoformat(twin["timestamp"])).total_seconds())
        if problems:
            failures.append("%s %s: %s" % (meter, sample["resource_id"], "; ".join(problems)))
        elif len(allowed_hits) > allowed_before:
            row["allowed"] += 1
        else:
            row["equal"] += 1
    extra = sorted({s["counter_name"] for ss in twins.values() for s in ss})
    if args.no_extra:
        # The other way round: virtmeter sends no sample of a meter ceilometer has that ceilometer did not send.
        for leftover in (s for ss in twins.values() for s in ss if s["counter_name"] in meters):
            failures.append("%s %s: virtmeter sends it, ceilometer does not" % (
                leftover["counter_name"], leftover["resource_id"]))

    print("differential test (%s): ceilometer %d samples, virtmeter %d samples" % (
        args.context, len(ceilometer), len(virtmeter)))
    print("| meter | ceilometer samples | equal | allowed differences | compared as |")
    print("|---|---|---|---|---|")
    for meter in sorted(meters):
        row = meters[meter]
        print("| %s | %d | %d | %d | %s |" % (meter, row["ceilometer"], row["equal"], row["allowed"],
                                             "moving counter" if row["moving"] else "exact"))
    total = sum(r["ceilometer"] for r in meters.values())
    print("meters compared: %d; samples equal: %d of %d; allowed differences: %d" % (
        len(meters), sum(r["equal"] for r in meters.values()), total, sum(r["allowed"] for r in meters.values())))
    if times:
        print("largest timestamp gap between twins: %.3f s" % max(times))
    for (meter, what), reason in sorted(allowed_seen.items()):
        print("allowed: %s %s: %s" % (meter, what, reason))
    if extra:
        print("virtmeter samples without a ceilometer twin (meters ceilometer lacks or does not send here): "
              + ", ".join(extra))
    for expectation in args.expect_power:
        # power.state of a domain as both send it: a number, or "none" for no sample at all.
        domain, _, wanted = expectation.partition("=")
        for side, samples in (("ceilometer", ceilometer), ("virtmeter", virtmeter)):
            got = [s["counter_volume"] for s in samples if s["counter_name"] == "power.state"
                   and s["resource_metadata"].get("name") == domain]
            expected = [] if wanted == "none" else [int(wanted)]
            print("power.state of %s from %s: %s (expected %s)" % (domain, side, got or "none", wanted))
            if got != expected:
                failures.append("power.state of %s from %s: %r, expected %s" % (domain, side, got, wanted))
    for expectation in args.expect_meters:
        # The exact set of meters both send for a domain (the shut-off one: what sampling it is allowed to add).
        domain, _, wanted = expectation.partition("=")
        expected = set(wanted.split(",")) if wanted else set()
        for side, samples in (("ceilometer", ceilometer), ("virtmeter", virtmeter)):
            got = {s["counter_name"] for s in samples if s["resource_metadata"].get("name") == domain}
            print("meters of %s from %s: %s" % (domain, side, ", ".join(sorted(got)) or "none"))
            if got != expected:
                failures.append("meters of %s from %s: %s, expected %s" % (
                    domain, side, sorted(got), sorted(expected)))
    for failure in failures:
        print("DIFFERENT: " + failure)
    if times and max(times) > 1.0:
        print("DIFFERENT: the two polls were more than a second apart")
        return 1 if failures else 2   # 2: only the timing, worth another try
    if total == 0:
        print("DIFFERENT: ceilometer produced no samples")
        return 1
    return 1 if failures else 0


def perf(args):
    """perf.* for a domain whose XML enables perf events: values, or else the reason, once per meter and domain."""
    meters = ("perf.cpu.cycles", "perf.instructions", "perf.cache.references", "perf.cache.misses")
    samples = [json.loads(line) for line in open(args.virtmeter) if line.strip()]
    values = {s["counter_name"]: s["counter_volume"] for s in samples
              if s["counter_name"] in meters and s["resource_metadata"].get("name") == args.domain}
    if len(values) == len(meters):
        print("perf: %s: %s" % (args.domain, ", ".join("%s %s" % kv for kv in sorted(values.items()))))
        return 0
    log = open(args.log).read().splitlines()
    status = 0
    for meter in meters:
        if meter in values:
            continue
        reasons = [line for line in log if "virtmeter.meter.name=%s " % meter in line
                   and "virtmeter.domain.name=%s " % args.domain in line]
        print("perf: %s: no %s; virtmeter's reason (%d line): %s" % (
            args.domain, meter, len(reasons), reasons[0] if reasons else "NONE"))
        if len(reasons) != 1:
            status = 1
    return status


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("poll")
    p.add_argument("--uri", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--report-stopped", action="store_true")
    p.add_argument("--secret", default="")
    p.add_argument("--out", required=True, help="file for the samples, one JSON object a line")
    p.add_argument("--ready", help="create this file once set up, then poll when --after has content")
    p.add_argument("--after", help="the file virtmeter's poll writes its samples to")
    c = sub.add_parser("compare")
    c.add_argument("ceilometer")
    c.add_argument("virtmeter")
    c.add_argument("--context", default="guests")
    c.add_argument("--stats-off", default="", help="comma-separated domains whose balloon has no stats period")
    c.add_argument("--expect-power", action="append", default=[], metavar="DOMAIN=N|none",
                   help="the power.state both must send for DOMAIN (none: no sample)")
    c.add_argument("--no-extra", action="store_true",
                   help="fail on a virtmeter sample of a meter ceilometer sent that has no ceilometer twin")
    c.add_argument("--expect-meters", action="append", default=[], metavar="DOMAIN=METER,...",
                   help="the exact meters both must send for DOMAIN")
    f = sub.add_parser("perf")
    f.add_argument("virtmeter")
    f.add_argument("log")
    f.add_argument("domain")
    args = parser.parse_args()
    if args.command == "poll":
        poll(args)
        return 0
    if args.command == "perf":
        return perf(args)
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
