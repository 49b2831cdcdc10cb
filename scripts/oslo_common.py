"""Shared by the oslo.messaging peers of virtmeter's AMQP tests and benchmark."""
import hashlib
import hmac
import logging
import os
import warnings

warnings.filterwarnings("ignore")  # eventlet's deprecation notice on import
logging.basicConfig(level=logging.ERROR)


def recursive_keypairs(d, separator=':'):
    """ceilometer.publisher.utils.recursive_keypairs"""
    for name, value in sorted(d.items()):
        if isinstance(value, dict):
            for subname, subvalue in recursive_keypairs(value, separator):
                yield ('%s%s%s' % (name, separator, subname), subvalue)
        else:
            yield name, value


def compute_signature(message, secret):
    """ceilometer.publisher.utils.compute_signature"""
    if not secret:
        return ''
    if isinstance(secret, str):
        secret = secret.encode('utf-8')
    digest_maker = hmac.new(secret, b'', hashlib.sha256)
    for name, value in recursive_keypairs(message):
        if name == 'message_signature':
            continue
        digest_maker.update(str(name).encode('utf-8'))
        digest_maker.update(str(value).encode('utf-8'))
    return digest_maker.hexdigest()


def transport(exchange, url):
    """An oslo.messaging notification transport whose control exchange is `exchange` (ceilometer sets it so)."""
    import oslo_messaging
    from oslo_config import cfg
    oslo_messaging.set_transport_defaults(exchange)
    conf = cfg.ConfigOpts()
    conf([], project='virtmeter-peer')
    return conf, oslo_messaging.get_notification_transport(conf, url=url)


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit('missing environment variable %s' % name)
    return value
