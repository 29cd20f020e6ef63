"""Beacon formats parsed from real sample strings (protocol §7, OwnTracks and NMEA docs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from gateway.tracking.errors import (
    BeaconEncodingError,
    BeaconFieldError,
    BeaconVersionError,
    NmeaError,
    UnknownSourceError,
)
from gateway.tracking.formats import (
    KMH_TO_MPS,
    KNOTS_TO_MPS,
    OwnTracksMapping,
    nmea_checksum,
    parse_native,
    parse_nmea,
    parse_owntracks,
)
from gateway.tracking.model import Fix, StatusReport
from protocol.topics import owntracks_topic

NOW = 1764300005.0

# docs/protocol.md §7, verbatim.
NATIVE_SAMPLE = (
    b'{"v": 1, "ts": 1764300000000, "lat": 30.8712, "lon": 120.1305, "acc": 5.0,\n'
    b' "spd": 1.3, "crs": 270.0, "alt": 12.0, "bat": 86, "sat": 9}'
)

# The OwnTracks booklet's location example (JSON page, "_type=location"), with its placeholder
# values (batt nnn, lat x.xxxxxx, lon y.yyyyyy, rad/p nnn) filled in.
OWNTRACKS_SAMPLE = json.dumps(
    {
        "_type": "location",
        "acc": 75,
        "alt": 13,
        "batt": 61,
        "cog": 270,
        "lat": 30.871234,
        "lon": 120.130512,
        "rad": 100,
        "t": "u",
        "tid": "YY",
        "tst": 1376715317,
        "vac": 10,
        "vel": 54,
        "p": 101,
        "conn": "w",
    }
).encode()
OWNTRACKS_LWT = b'{"_type":"lwt","tst":1376715317}'

# The classic NMEA 0183 RMC and GGA examples (gpsd "NMEA revealed" / NMEA reference docs).
RMC_SAMPLE = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
GGA_SAMPLE = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
GSV_SAMPLE = "$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74"


def mapping(
    devices: set[str], explicit: dict[tuple[str, str], str] | None = None
) -> OwnTracksMapping:
    return OwnTracksMapping(explicit or {}, devices.__contains__)


# ---- native ------------------------------------------------------------------------------------


def test_native_sample_from_the_protocol() -> None:
    fix = parse_native("T001", NATIVE_SAMPLE, NOW)
    assert fix == Fix(
        device="T001",
        fix_time=1764300000.0,
        lat=30.8712,
        lon=120.1305,
        speed=1.3,
        course=270.0,
        altitude=12.0,
        accuracy=5.0,
        battery=86,
        valid=True,
        source="native",
        attributes={"sat": 9},
        server_time=NOW,
    )


def test_native_minimal_beacon() -> None:
    fix = parse_native("T001", b'{"v":1,"ts":1764300000123,"lat":-12.5,"lon":-77}', NOW)
    assert (fix.fix_time, fix.lat, fix.lon, fix.speed, fix.battery) == (
        1764300000.123,
        -12.5,
        -77.0,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("payload", "error", "needle"),
    [
        (b"not json", BeaconEncodingError, "JSON"),
        (b"\xff\xfe", BeaconEncodingError, "JSON"),
        # Invalid UTF-8 in a key msgspec would skip unread: refused all the same.
        (b'{"v":1,"ts":1,"lat":0,"lon":0,"note":"\xff"}', BeaconEncodingError, "UTF-8"),
        (b'{"v":1,"ts":1,"lat":0,"lon":0,"\xc3":1}', BeaconEncodingError, "UTF-8"),
        (b"[1, 2]", BeaconEncodingError, "object"),
        (b'{"ts":1,"lat":0,"lon":0}', BeaconVersionError, "'v'"),
        (b'{"v":2,"ts":1,"lat":0,"lon":0}', BeaconVersionError, "'v'"),
        (b'{"v":true,"ts":1,"lat":0,"lon":0}', BeaconVersionError, "'v'"),
        (b'{"v":1,"lat":0,"lon":0}', BeaconFieldError, "missing required field `ts`"),
        (b'{"v":1,"ts":1.5,"lat":0,"lon":0}', BeaconFieldError, "int.*ts"),
        (b'{"v":1,"ts":1,"lon":0}', BeaconFieldError, "missing required field `lat`"),
        (b'{"v":1,"ts":1,"lat":91,"lon":0}', BeaconFieldError, "<= 90.0 - at `..lat`"),
        (b'{"v":1,"ts":1,"lat":0,"lon":-180.5}', BeaconFieldError, ">= -180.0 - at `..lon`"),
        (b'{"v":1,"ts":1,"lat":"30","lon":0}', BeaconFieldError, "got `str` - at `..lat`"),
        (b'{"v":1,"ts":1,"lat":true,"lon":0}', BeaconFieldError, "got `bool` - at `..lat`"),
        (b'{"v":1,"ts":1,"lat":0,"lon":0,"bat":101}', BeaconFieldError, "bat"),
        (b'{"v":1,"ts":1,"lat":0,"lon":0,"acc":-1}', BeaconFieldError, "acc"),
        (b'{"v":1,"ts":1,"lat":0,"lon":0,"sat":"9"}', BeaconFieldError, "sat"),
        (b'{"v":1,"ts":1,"lat":0,"lon":0,"valid":1}', BeaconFieldError, "valid"),
        (b'{"v":1,"ts":1,"lat":NaN,"lon":0}', BeaconEncodingError, "JSON"),
        (b'{"v":1,"ts":1,"lat":0,"lon":0,"x":"' + b"a" * 4100 + b'"}', BeaconEncodingError, "4096"),
    ],
)
def test_native_rejects_bad_beacons(payload: bytes, error: type[Exception], needle: str) -> None:
    with pytest.raises(error, match=needle):
        parse_native("T001", payload, NOW)


BIG = b"1" + b"0" * 400  # a JSON integer no float can hold
DEEP = b"[" * 1500 + b"]" * 1500  # nested deeper than the interpreter's recursion limit


@pytest.mark.parametrize(
    ("payload", "error", "needle"),
    [
        (b'{"v":1,"ts":' + BIG + b',"lat":1,"lon":1}', BeaconFieldError, "ts"),
        (b'{"v":1,"ts":100000000000001,"lat":1,"lon":1}', BeaconFieldError, "ts"),
        (b'{"v":1,"ts":1,"lat":1,"lon":1,"x":' + DEEP + b"}", BeaconEncodingError, "nested"),
    ],
)
def test_native_huge_numbers_and_deep_nesting_are_refused(
    payload: bytes, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        parse_native("T001", payload, NOW)


def test_native_invalid_flag_is_kept() -> None:
    fix = parse_native("T001", b'{"v":1,"ts":1,"lat":1,"lon":2,"valid":false}', NOW)
    assert fix.valid is False


# ---- OwnTracks ---------------------------------------------------------------------------------


def test_owntracks_location_sample() -> None:
    result = parse_owntracks("owntracks/T001/phone", OWNTRACKS_SAMPLE, NOW, mapping({"T001"}))
    assert isinstance(result, Fix)
    assert result.device == "T001"
    assert result.fix_time == 1376715317.0
    assert (result.lat, result.lon) == (30.871234, 120.130512)
    assert result.speed == pytest.approx(54 * KMH_TO_MPS)  # OwnTracks vel is km/h
    assert result.speed == pytest.approx(15.0)
    assert (result.course, result.altitude, result.accuracy, result.battery) == (270, 13, 75, 61)
    assert result.source == "owntracks"
    assert result.attributes == {"tid": "YY", "t": "u", "conn": "w", "vac": 10, "p": 101}


def test_owntracks_last_will_means_offline() -> None:
    result = parse_owntracks("owntracks/T001/phone", OWNTRACKS_LWT, NOW, mapping({"T001"}))
    assert result == StatusReport("T001", "offline", 1376715317.0, reason="lost")


def test_owntracks_other_types_are_ignored() -> None:
    transition = b'{"_type":"transition","event":"enter","tst":1,"lat":1,"lon":2,"wtst":1}'
    assert parse_owntracks("owntracks/T001/p", transition, NOW, mapping({"T001"})) is None


def test_owntracks_explicit_mapping_wins() -> None:
    resolve = mapping({"T001"}, {("alice", "iphone"): "T004"})
    result = parse_owntracks("owntracks/alice/iphone", OWNTRACKS_SAMPLE, NOW, resolve)
    assert isinstance(result, Fix) and result.device == "T004"


def test_owntracks_unmapped_user_is_refused() -> None:
    with pytest.raises(UnknownSourceError, match="bob/phone"):
        parse_owntracks("owntracks/bob/phone", OWNTRACKS_SAMPLE, NOW, mapping({"T001"}))


@pytest.mark.parametrize(
    "topic", ["owntracks/T001", "owntracks/T001/phone/event", "other/T001/phone", "owntracks//x"]
)
def test_owntracks_topic_shape(topic: str) -> None:
    assert owntracks_topic(topic) is None
    with pytest.raises(BeaconFieldError):
        parse_owntracks(topic, OWNTRACKS_SAMPLE, NOW, mapping({"T001"}))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"_type":"location","lat":1,"lon":2}',
        b'{"_type":"location","tst":"1","lat":1,"lon":2}',
        b'{"_type":"location","tst":1,"lat":100,"lon":2}',
        b'{"_type":7}',
        b'{"_type":"location","tst":1,"lat":1,"lon":2,"batt":"x"}',
    ],
)
def test_owntracks_bad_fields(payload: bytes) -> None:
    with pytest.raises(BeaconFieldError):
        parse_owntracks("owntracks/T001/p", payload, NOW, mapping({"T001"}))


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b'{"_type":"location","tst":1700000000,"lat":' + BIG + b',"lon":1}', "'lat'"),
        (b'{"_type":"location","tst":1700000000,"lat":1,"lon":1,"batt":' + BIG + b"}", "'batt'"),
        (b'{"_type":"location","tst":' + BIG + b',"lat":1,"lon":1}', "'tst'"),
        (b'{"_type":"location","tst":100000000001,"lat":1,"lon":1}', "'tst'"),
        (b'{"_type":"lwt","tst":' + BIG + b"}", "'tst'"),
    ],
)
def test_owntracks_numbers_no_float_holds_are_bad_fields(payload: bytes, needle: str) -> None:
    with pytest.raises(BeaconFieldError, match=needle):
        parse_owntracks("owntracks/T001/p", payload, NOW, mapping({"T001"}))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (b'"tid":"\\ud800"', "'tid' is not valid Unicode"),  # a lone surrogate escape
        (b'"SSID":"ok\\udfff"', "'SSID' is not valid Unicode"),
        (b'"p":{"kPa":101}', "'p' must be a string, number"),
        (b'"tid":["Y","Y"]', "'tid' must be a string, number"),
    ],
)
def test_owntracks_attributes_that_cannot_be_stored_are_refused(extra: bytes, needle: str) -> None:
    payload = b'{"_type":"location","tst":1700000000,"lat":1,"lon":2,' + extra + b"}"
    with pytest.raises(BeaconFieldError, match=needle):
        parse_owntracks("owntracks/T001/p", payload, NOW, mapping({"T001"}))


def test_owntracks_deeply_nested_json_is_bad_json() -> None:
    with pytest.raises(BeaconEncodingError, match="nested"):
        parse_owntracks("owntracks/T001/p", DEEP, NOW, mapping({"T001"}))
    with pytest.raises(BeaconEncodingError, match="nested"):
        parse_owntracks("owntracks/T001/p", b'{"_type":' + DEEP + b"}", NOW, mapping({"T001"}))


# ---- NMEA ----------------------------------------------------------------------------------------


def test_nmea_rmc_and_gga_of_one_epoch_merge() -> None:
    payload = f"{RMC_SAMPLE}\r\n{GGA_SAMPLE}\r\n{GSV_SAMPLE}\r\n".encode()
    (fix,) = parse_nmea("T001", payload, NOW)
    assert fix.fix_time == datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC).timestamp()
    assert fix.lat == pytest.approx(48 + 7.038 / 60)
    assert fix.lon == pytest.approx(11 + 31.0 / 60)
    assert fix.speed == pytest.approx(22.4 * KNOTS_TO_MPS)
    assert fix.course == 84.4
    assert fix.altitude == 545.4
    assert fix.accuracy == pytest.approx(0.9 * 5.0)
    assert fix.valid and fix.source == "nmea"
    assert fix.attributes == {"hdop": 0.9, "sat": 8, "quality": 1}


def test_nmea_gga_alone_takes_the_server_date() -> None:
    server = datetime(2026, 11, 28, 12, 40, 0, tzinfo=UTC).timestamp()
    (fix,) = parse_nmea("T001", GGA_SAMPLE.encode(), server)
    assert fix.fix_time == datetime(2026, 11, 28, 12, 35, 19, tzinfo=UTC).timestamp()
    assert fix.speed is None


def test_nmea_gga_just_before_midnight_belongs_to_yesterday() -> None:
    server = datetime(2026, 11, 29, 0, 0, 5, tzinfo=UTC).timestamp()
    sentence = nmea_checksum("GPGGA,235958,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    (fix,) = parse_nmea("T001", sentence.encode(), server)
    assert fix.fix_time == datetime(2026, 11, 28, 23, 59, 58, tzinfo=UTC).timestamp()


def test_nmea_rmc_void_status_is_invalid() -> None:
    sentence = nmea_checksum("GPRMC,123519,V,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
    (fix,) = parse_nmea("T001", sentence.encode(), NOW)
    assert fix.valid is False
    assert fix.lat == pytest.approx(48.1173)


def test_nmea_gga_quality_zero_is_invalid_even_with_a_valid_rmc() -> None:
    gga = nmea_checksum("GPGGA,123519,4807.038,N,01131.000,E,0,00,99.9,,,,,,")
    (fix,) = parse_nmea("T001", f"{RMC_SAMPLE}\n{gga}".encode(), NOW)
    assert fix.valid is False


def test_nmea_void_without_position_lands_at_zero_and_invalid() -> None:
    (fix,) = parse_nmea("T001", nmea_checksum("GNRMC,001043.00,V,,,,,,,281126,,,N").encode(), NOW)
    assert (fix.lat, fix.lon, fix.valid) == (0.0, 0.0, False)


def test_nmea_several_epochs_in_one_payload_come_out_in_time_order() -> None:
    first = nmea_checksum("GPRMC,123520,A,4807.040,N,01131.002,E,001.0,084.4,230394,,")
    payload = f"{first}\n{RMC_SAMPLE}".encode()
    fixes = parse_nmea("T001", payload, NOW)
    assert [f.fix_time for f in fixes] == sorted(f.fix_time for f in fixes)
    assert len(fixes) == 2


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (RMC_SAMPLE[:-2] + "6B", "checksum"),
        ("GPRMC,123519,A", "must start"),
        (GSV_SAMPLE, "no RMC or GGA"),
        ("", "no RMC or GGA"),
        ("$GPRMC,,V,,,,,,,,,,N*53", "without a time"),
        ("$\u00e9", "ASCII"),
        ("$GARBAGE", "NMEA"),
    ],
)
def test_nmea_rejects_bad_input(payload: str, needle: str) -> None:
    with pytest.raises(NmeaError, match=needle):
        parse_nmea("T001", payload.encode(), NOW)


def rmc(lat: str = "4807.038,N", lon: str = "01131.000,E", speed: str = "022.4",
        course: str = "084.4", day: str = "230394", clock: str = "123519") -> bytes:  # fmt: skip
    return nmea_checksum(f"GPRMC,{clock},A,{lat},{lon},{speed},{course},{day},003.1,W").encode()


def gga(lat: str = "4807.038,N", lon: str = "01131.000,E", alt: str = "545.4",
        hdop: str = "0.9") -> bytes:  # fmt: skip
    return nmea_checksum(f"GPGGA,123519,{lat},{lon},1,08,{hdop},{alt},M,46.9,M,,").encode()


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (rmc(lat="9959.000,N"), "latitude 9959.000,N is beyond 90"),
        (rmc(lat="9000.001,S"), "latitude 9000.001,S is beyond 90"),
        (rmc(lon="18000.600,W"), "longitude 18000.600,W is beyond 180"),
        (rmc(lon="99999.000,E"), "longitude '99999.000' is not"),
        (rmc(lat="4860.000,N"), "minutes < 60"),
        (rmc(lat="48,N"), "latitude '48' is not"),
        (rmc(lat="-4807.038,N"), "latitude '-4807.038' has a sign"),
        (gga(lon="+01131.000,E"), "longitude '\\+01131.000' has a sign"),
        (rmc(lat="4807.038,X"), "latitude hemisphere must be N or S: 'X'"),
        (gga(lon="01131.000,N"), "longitude hemisphere must be E or W: 'N'"),
        (rmc(lat="4807.038,"), "latitude hemisphere must be N or S: ''"),
        (rmc(speed="-5"), "speed .* -5.0 is outside"),
        (rmc(speed="1e308"), "speed .* is outside"),
        (rmc(course="999"), "course 999.0 is outside"),
        (rmc(course="-1"), "course -1.0 is outside"),
        (gga(alt="-1000.5"), "altitude -1000.5 is outside"),
        (gga(hdop="-1"), "HDOP -1.0 is outside"),
        (rmc(day="310294"), "date '310294' is not a valid ddmmyy"),
        (rmc(day="000000"), "date '000000' is not a valid ddmmyy"),
        (rmc(clock="256199"), "time of fix '256199' is not a valid hhmmss"),
    ],
)
def test_nmea_refuses_values_outside_the_native_ranges(payload: bytes, needle: str) -> None:
    with pytest.raises(NmeaError, match=needle):
        parse_nmea("T001", payload, NOW)


def test_nmea_southern_and_western_hemispheres_and_range_edges() -> None:
    (fix,) = parse_nmea("T001", rmc(lat="4807.038,S", lon="01131.000,W"), NOW)
    assert (fix.lat, fix.lon) == (pytest.approx(-48.1173), pytest.approx(-(11 + 31 / 60)))
    (fix,) = parse_nmea("T001", rmc(lat="9000.000,N", lon="18000.000,W", course="360"), NOW)
    assert (fix.lat, fix.lon, fix.course) == (90.0, -180.0, 360.0)
    (fix,) = parse_nmea("T001", rmc(lat=",", lon=",", day=""), NOW)  # a void RMC: no position
    assert (fix.lat, fix.lon, fix.valid) == (0.0, 0.0, False)


def test_owntracks_payload_must_be_utf8() -> None:
    utf16 = OWNTRACKS_SAMPLE.decode().encode("utf-16")
    with pytest.raises(BeaconEncodingError, match="not UTF-8"):
        parse_owntracks("owntracks/T001/phone", utf16, NOW, mapping({"T001"}))
