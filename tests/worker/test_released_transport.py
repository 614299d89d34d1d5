"""A Redis channel closed after its transport was released (a broker reconnect) hands
back nothing instead of raising, so Celery does not shut the worker down."""

import logging

import kombu
import pytest
from kombu.transport import redis as kombu_redis

from imgburst.worker import released_transport

pytestmark = pytest.mark.services


def released_channel(redis_url: str) -> tuple[kombu.Connection, object]:
    """A channel as Celery's reconnect leaves it: pools gone, transport released."""
    conn = kombu.Connection(redis_url)
    channel = conn.default_channel
    channel._disconnect_pools()
    channel.__dict__.pop("client", None)
    conn.transport.client = None
    return conn, channel


def test_kombu_alone_raises_on_a_released_transport(redis_url):
    _conn, channel = released_channel(redis_url)
    with pytest.raises(AttributeError, match="hostname"):
        released_transport._original(channel.qos)


def test_closing_such_a_channel_with_an_unacked_message_goes_on(redis_url, caplog):
    released_transport.install()
    _conn, channel = released_channel(redis_url)
    channel.qos._delivered["tag-1"] = object()
    with caplog.at_level(logging.WARNING, logger="imgburst.worker"):
        channel.close()  # restore_unacked_once -> restore_unacked
    assert channel.closed
    assert not channel.qos._delivered
    assert "1 unacked message(s) left" in caplog.text
    assert kombu_redis.QoS.restore_unacked is released_transport._restore_unacked


def test_a_live_channel_still_restores(redis_url):
    """With its transport, the restore is kombu's own: the message goes back to Redis."""
    released_transport.install()
    conn = kombu.Connection(redis_url)
    with conn:
        channel = conn.channel()
        queue = kombu.Queue("released-transport-test", channel=channel)
        queue.declare()
        queue.purge()
        kombu.Producer(channel).publish({"n": 1}, routing_key=queue.name)
        message = queue.get(no_ack=False)
        assert message is not None
        channel.close()  # unacked: handed back
        again = conn.channel()
        back = kombu.Queue(queue.name, channel=again).get(no_ack=True)
        assert back is not None and back.payload == {"n": 1}
        kombu.Queue(queue.name, channel=again).delete()
