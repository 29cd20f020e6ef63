"""Topics of protocol §2: every builder has its parser, and the ACL of §8 is built from them."""

from __future__ import annotations

from protocol import topics


def test_device_topics_parse_back() -> None:
    for build in (topics.status, topics.ctrl_up, topics.ctrl_down, topics.gps, topics.call_up):
        topic = build("T001")
        assert topic.startswith("xixin/v1/dev/T001/")
        assert topics.device_topic(topic) == ("T001", topic[len("xixin/v1/dev/T001/") :])
    assert topics.device_status_id(topics.status("T001")) == "T001"
    assert topics.device_status_id(topics.ctrl_up("T001")) is None
    assert topics.device_topic("xixin/v1/dev/T001") is None
    assert topics.device_topic("xixin/v2/dev/T001/status") is None


def test_talkgroup_topics_parse_back() -> None:
    assert topics.talkgroup_topic(topics.tg_down("grid-07")) == ("grid-07", "down")
    assert topics.talkgroup_topic(topics.tg_ctrl("grid-07")) == ("grid-07", "ctrl")
    assert topics.talkgroup_topic(topics.tg_up("grid-07", "T001")) == ("grid-07", "up/T001")
    assert topics.talkgroup_topic("xixin/v1/tg/") is None


def test_gateway_status_parses_back() -> None:
    assert topics.gateway_status_instance(topics.gateway_status("gw1")) == "gw1"
    assert topics.gateway_status_instance("xixin/v1/gw//status") is None
    assert topics.gateway_status_instance(topics.status("T001")) is None


def test_terminal_subscriptions_cover_what_the_acl_lets_it_read() -> None:
    readable = {p for access, p in topics.device_acl("T001", ["grid-07"]) if "read" in access}
    wanted = topics.terminal_subscriptions("T001") + topics.talkgroup_subscriptions(["grid-07"])
    assert {topic for topic, _ in wanted} <= readable


def test_device_acl_is_its_own_topics_and_its_talkgroups() -> None:
    rules = topics.device_acl("T001", ["grid-07", "area-a"], dispatcher=False)
    written = {p for access, p in rules if "write" in access}
    assert topics.tg_up("grid-07", "T001") in written
    assert topics.tg_up("area-a", "T001") in written
    assert all("T001" in p for p in written), "a device writes only topics with its own id"
    assert ("read", topics.DEVICE_STATUS_FILTER) not in rules
    assert ("read", topics.DEVICE_STATUS_FILTER) in topics.device_acl("D1", [], dispatcher=True)


def test_talkgroup_uplinks_and_owntracks_parse_back() -> None:
    assert topics.talkgroup_uplink(topics.tg_up("grid-07", "T001")) == ("grid-07", "T001")
    assert topics.talkgroup_uplink(topics.tg_down("grid-07")) is None
    assert topics.talkgroup_uplink("xixin/v1/tg/grid-07/up/T001/x") is None
    assert topics.talkgroup_uplink("other/v1/tg/grid-07/up/T001") is None
    assert topics.owntracks_topic(topics.owntracks("T001", "phone")) == ("T001", "phone")
    assert topics.owntracks_topic("owntracks/T001/phone/event") is None
