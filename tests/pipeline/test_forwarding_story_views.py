"""What support and finance see of the forwarder: a click's story tells what we told the
publisher (pipeline.story), and the overview's deliveries by state (pipeline.views)."""

from __future__ import annotations

from datetime import UTC, datetime

import pipeline
from pipeline.forwarding.forwarder import Forwarder
from pipeline.forwarding.sender import SendResult
from pipeline.story import click_story
from pipeline.views import deliveries_by_state
from tests.support.clock import FixedClock
from tests.support.forwarding import forwarding_data
from tests.support.log_builder import LogBuilder, cid

ENDPOINTS = """\
[[affiliates]]
id = "aff1"
points_per_unit = 10
[[affiliates.postbacks]]
url = "https://pub.example/cb?c={click_id}&e={event}&token=very-secret-token-1"
events = ["pending", "approved", "reversed"]
[[affiliates]]
id = "aff2"
[[affiliates.postbacks]]
url = "https://other.example/cb"
"""


class Answers:
    """200 for aff1's endpoint, 500 for aff2's."""

    def send(self, request):
        return SendResult(200 if "pub.example" in request.url else 500, duration_ms=3)


def forwarded(tmp_path):
    data = forwarding_data(tmp_path / "data", ENDPOINTS)
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10", status="pending", status_updates=True)
    b.postback(cid(1), status="approved", result="duplicate", status_updates=True)
    b.click(cid(2), affiliate_id="aff2")
    b.postback(cid(2), amount="3")
    b.click(cid(3))
    b.write(data)
    with Forwarder(data, sender=Answers(), clock=FixedClock(datetime(2024, 5, 2, tzinfo=UTC))) as fwd:
        fwd.run_once()
    pipeline.run(data)
    return data, pipeline.load(data)


def test_a_clicks_story_tells_what_we_told_the_publisher(tmp_path):
    data, wh = forwarded(tmp_path)
    story = click_story(wh, cid(1), data)
    assert story.deliveries.select("event", "state", "points", "attempts", "last_http_status").rows() == [
        ("pending", "delivered", 70, 1, 200), ("approved", "delivered", 70, 1, 200)]
    assert all("very-secret-token-1" not in url and "token=very…" in url for url in story.deliveries["url"])
    assert story.attempts.select("event", "attempt", "outcome", "http_status").rows() == [
        ("pending", 1, "delivered", 200), ("approved", 1, "delivered", 200)]
    quiet = click_story(wh, cid(3), data)
    assert quiet.deliveries.is_empty() and quiet.attempts.is_empty()


def test_deliveries_by_state(tmp_path):
    _, wh = forwarded(tmp_path)
    table = deliveries_by_state(wh)
    assert table.select("affiliate", "state", "deliveries", "attempts", "points").rows() == [
        ("aff1", "delivered", 2, 2, 70), ("aff2", "failed", 1, 1, None)]
