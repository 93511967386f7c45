"""Demo traffic: seed 002's users moving around the world, with injected frauds.

Seed 002 (the Confluent geo-velocity demo) defines four users with a maximum travel speed each:
``user_1`` Lena Whitaker 10 km/h, ``user_2`` Elias Monroe 100, ``user_3`` Nina Langston 1000 and
``user_4`` Jordan Blake 99999. This module keeps them (:data:`DEMO_USERS`) and adds generated
users (``user_5`` ...), each with a home city from a built-in table of 30 world cities
(:data:`CITIES`), 1-2 cards, usual merchants, one or two devices and home IPs.

Normal behaviour: a few transactions a day per card, near home (jitter small enough that the
user's own max speed is never exceeded between two normal transactions, which are at least
45 minutes apart), lognormal amounts around the user's typical spend (20..150) truncated to
[typical / 2.5, typical x 2.5] (so seed 001's 8 x running-average rule never fires on normal
traffic), usual merchants, device and IP, mostly in local daytime (about 3 % at any hour:
unusual-hour noise, still ``normal``).

Injected frauds (``is_fraud`` true, ``scenario`` the name below), each anchored on a normal
transaction of the user that is followed by at least 3 hours of quiet, shaped so the standard
detectors of DESIGN.md catch them with their default thresholds:

=====================  =======================================================================
scenario               shape
=====================  =======================================================================
impossible_travel      one transaction in a city > 2,500 km away, 12-40 min after the anchor
                       (users with max_speed_kmh < 1000 only), new device, foreign IP
velocity               6-8 transactions of one card within 20 s
card_testing           3-5 amounts of 0.50-2.00 at distinct new online merchants within 5 min
small_then_large       an amount < 1.00, then 3-30 s later 600-2,000 on the same card
zip_mismatch           2-8 min after the anchor, same card and place, another zipcode
amount_anomaly         > 10 x the card's running average (seed 001's), 20-45 min after the
                       anchor, same zipcode
new_device             an online transaction from a device the user never used
anonymous_network      an online transaction from an anonymous-network IP (203.0.113.0/24)
=====================  =======================================================================

A card that was tested (``card_testing``) or hit by ``small_then_large`` is reissued: the
user's later transactions on it use a new card id, the next unused letter (``card-0007-a`` ->
``card-0007-b``, or ``-c`` when the user already has a ``b`` card).
Otherwise seed 001's running average (halved by each tiny amount, never updated on a fired
transaction) would leave the card flagging every later purchase. The next normal transaction
after an ``impossible_travel`` is back home, so geo-velocity usually fires on it as well: that
record stays labelled ``normal``, as a real one would be.

IP scheme (made up, deterministic, documented for the IP detectors): country ``k`` of
:data:`COUNTRY_IP_BLOCKS` (countries sorted by code) owns ``100.(64 + k).0.0/16`` inside the
shared address space 100.64.0.0/10, which is never routed on the public internet. Anonymous
networks (Tor exits, anonymizing VPNs) are ``203.0.113.0/24``. :func:`ip_country` maps back.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ANONYMOUS_IP_PREFIX",
    "CITIES",
    "COUNTRY_IP_BLOCKS",
    "DEMO_USERS",
    "FRAUD_SCENARIOS",
    "PROFILE_FIELDS",
    "SCENARIOS",
    "City",
    "demo_profiles",
    "demo_records",
    "haversine_km",
    "ip_country",
    "write_profiles",
]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class City:
    """A home city: centre coordinates, ISO country code, UTC offset (hours) and zipcodes."""

    name: str
    country: str
    lat: float
    lon: float
    utc_offset: float
    zipcodes: tuple[str, ...]


CITIES: tuple[City, ...] = (
    City("New York", "US", 40.7128, -74.0060, -5, ("10001", "10002", "10003", "10011")),
    City("Los Angeles", "US", 34.0522, -118.2437, -8, ("90012", "90013", "90014", "90017")),
    City("Chicago", "US", 41.8781, -87.6298, -6, ("60601", "60602", "60603", "60604")),
    City("Houston", "US", 29.7604, -95.3698, -6, ("77002", "77003", "77004", "77006")),
    City("Toronto", "CA", 43.6532, -79.3832, -5, ("M5H 2N2", "M5J 2N1", "M5V 3L9", "M4W 1A8")),
    City("Mexico City", "MX", 19.4326, -99.1332, -6, ("06000", "06010", "06020", "06030")),
    City("Sao Paulo", "BR", -23.5505, -46.6333, -3, ("01001-000", "01002-000", "01003-000")),
    City("Buenos Aires", "AR", -34.6037, -58.3816, -3, ("C1002", "C1003", "C1004", "C1005")),
    City("London", "GB", 51.5074, -0.1278, 0, ("SW1A 1AA", "EC1A 1BB", "W1A 0AX", "N1 9GU")),
    City("Dublin", "IE", 53.3498, -6.2603, 0, ("D01 F5P2", "D02 X285", "D04 C932", "D08 VF8H")),
    City("Paris", "FR", 48.8566, 2.3522, 1, ("75001", "75002", "75003", "75004")),
    City("Berlin", "DE", 52.5200, 13.4050, 1, ("10115", "10117", "10119", "10178")),
    City("Madrid", "ES", 40.4168, -3.7038, 1, ("28001", "28002", "28003", "28004")),
    City("Rome", "IT", 41.9028, 12.4964, 1, ("00118", "00184", "00185", "00186")),
    City("Amsterdam", "NL", 52.3676, 4.9041, 1, ("1011 AB", "1012 JS", "1015 CJ", "1017 CT")),
    City("Zurich", "CH", 47.3769, 8.5417, 1, ("8001", "8002", "8003", "8004")),
    City("Stockholm", "SE", 59.3293, 18.0686, 1, ("111 20", "111 21", "111 22", "111 29")),
    City("Warsaw", "PL", 52.2297, 21.0122, 1, ("00-001", "00-002", "00-003", "00-004")),
    City("Istanbul", "TR", 41.0082, 28.9784, 3, ("34000", "34110", "34122", "34134")),
    City("Cairo", "EG", 30.0444, 31.2357, 2, ("11511", "11512", "11513", "11514")),
    City("Lagos", "NG", 6.5244, 3.3792, 1, ("100001", "100211", "101233", "101241")),
    City("Nairobi", "KE", -1.2921, 36.8219, 3, ("00100", "00200", "00300", "00400")),
    City("Johannesburg", "ZA", -26.2041, 28.0473, 2, ("2000", "2001", "2041", "2196")),
    City("Mumbai", "IN", 19.0760, 72.8777, 5.5, ("400001", "400002", "400003", "400004")),
    City("Bangkok", "TH", 13.7563, 100.5018, 7, ("10100", "10110", "10200", "10330")),
    City("Singapore", "SG", 1.3521, 103.8198, 8, ("018956", "049315", "068809", "079903")),
    City("Tokyo", "JP", 35.6762, 139.6503, 9, ("100-0001", "100-0005", "104-0061", "150-0002")),
    City("Seoul", "KR", 37.5665, 126.9780, 9, ("04524", "03154", "04637", "06164")),
    City("Sydney", "AU", -33.8688, 151.2093, 10, ("2000", "2007", "2008", "2010")),
    City("Auckland", "NZ", -36.8485, 174.7633, 12, ("1010", "1011", "1021", "1023")),
)
"""Thirty world cities: the users' homes and the destinations of impossible travel."""

_CITY_BY_NAME = {city.name: city for city in CITIES}

COUNTRY_IP_BLOCKS: dict[str, str] = {
    country: f"100.{64 + k}" for k, country in enumerate(sorted({c.country for c in CITIES}))
}
"""Country code -> first two octets of its made-up /16 (inside 100.64.0.0/10)."""

ANONYMOUS_IP_PREFIX = "203.0.113."
"""Anonymous networks (Tor exits, anonymizing VPNs): 203.0.113.0/24."""

_COUNTRY_BY_BLOCK = {block: country for country, block in COUNTRY_IP_BLOCKS.items()}

SCENARIOS: tuple[str, ...] = (
    "normal",
    "impossible_travel",
    "velocity",
    "card_testing",
    "small_then_large",
    "zip_mismatch",
    "amount_anomaly",
    "new_device",
    "anonymous_network",
)
"""Every ``scenario`` label :func:`demo_records` produces."""

FRAUD_SCENARIOS: tuple[str, ...] = SCENARIOS[1:]

# Relative frequency of fraud episodes (not records) after one of each is placed.
_EPISODE_WEIGHTS: dict[str, float] = {
    "impossible_travel": 3.0,
    "velocity": 1.0,
    "card_testing": 1.5,
    "small_then_large": 2.0,
    "zip_mismatch": 3.0,
    "amount_anomaly": 3.0,
    "new_device": 1.5,
    "anonymous_network": 1.5,
}
_REISSUE_AFTER = frozenset({"card_testing", "small_then_large"})

PROFILE_FIELDS: tuple[str, ...] = (
    "user_id",
    "first_name",
    "last_name",
    "max_speed_kmh",
    "home_lat",
    "home_lon",
    "home_country",
    "review_threshold",
    "decline_threshold",
)
"""Columns of the Profile contract (DESIGN.md), in order."""

DEMO_USERS: tuple[dict[str, Any], ...] = (
    {
        "user_id": "user_1",
        "first_name": "Lena",
        "last_name": "Whitaker",
        "max_speed_kmh": 10.0,
        "home_lat": 51.5074,
        "home_lon": -0.1278,
        "home_country": "GB",
    },
    {
        "user_id": "user_2",
        "first_name": "Elias",
        "last_name": "Monroe",
        "max_speed_kmh": 100.0,
        "home_lat": 40.7128,
        "home_lon": -74.006,
        "home_country": "US",
    },
    {
        "user_id": "user_3",
        "first_name": "Nina",
        "last_name": "Langston",
        "max_speed_kmh": 1000.0,
        "home_lat": 48.8566,
        "home_lon": 2.3522,
        "home_country": "FR",
    },
    {
        "user_id": "user_4",
        "first_name": "Jordan",
        "last_name": "Blake",
        "max_speed_kmh": 99999.0,
        "home_lat": -33.8688,
        "home_lon": 151.2093,
        "home_country": "AU",
    },
)
"""Seed 002's four users (exact names and max speeds); homes London, New York, Paris, Sydney."""

_DEMO_HOME_CITY = ("London", "New York", "Paris", "Sydney")

_FIRST_NAMES = (
    "Aisha", "Alejandro", "Amara", "Anders", "Ana", "Arjun", "Ben", "Camille", "Carlos",
    "Chen", "Chloe", "Daniel", "Dmitri", "Elena", "Emma", "Fatima", "Felix", "Gabriel",
    "Hana", "Hiro", "Ingrid", "Isabel", "Jamal", "Jin", "Julia", "Kwame", "Laila", "Liam",
    "Lucas", "Maya", "Mateo", "Mei", "Noah", "Nora", "Olivia", "Omar", "Priya", "Rafael",
    "Rosa", "Sakura", "Samir", "Sofia", "Tariq", "Thomas", "Uma", "Victor", "Wei", "Yara",
    "Yusuf", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Adeyemi", "Andersson", "Bauer", "Becker", "Brennan", "Castillo", "Chen", "Costa",
    "Dubois", "Eriksen", "Fernandez", "Fischer", "Garcia", "Haddad", "Hughes", "Ibrahim",
    "Ivanova", "Jensen", "Kaur", "Kim", "Kowalski", "Larsen", "Lopez", "Mahlangu", "Martin",
    "Mensah", "Moreau", "Murphy", "Nakamura", "Novak", "Okafor", "Olsen", "Patel", "Rossi",
    "Santos", "Schmidt", "Silva", "Singh", "Sato", "Tanaka", "Thompson", "Van Dijk",
    "Walker", "Weber", "Wong", "Yamamoto", "Yilmaz", "Zhang", "Ziegler", "Nguyen",
)  # fmt: skip

# Generated users' max speeds (km/h) and how common each is.
_SPEEDS: tuple[tuple[float, float], ...] = (
    (20.0, 0.10),  # on foot / bicycle
    (120.0, 0.35),  # car
    (300.0, 0.15),  # high-speed train
    (900.0, 0.35),  # plane
    (1200.0, 0.05),  # frequent long-haul flyer, generous limit
)

_CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "retail",
    "pharmacy",
    "electronics",
    "entertainment",
    "travel",
    "transport",
    "cafe",
)
_ONLINE_CATEGORIES = ("digital_goods", "online_services", "gaming", "gift_cards")
_MERCHANTS_PER_CITY = 100
_ONLINE_MERCHANT_BASE = 9000  # m-9000 .. m-9999: online merchants, new to everyone

_MIN_GAP_MS = 45 * MINUTE_MS  # between two normal transactions of one user
_QUIET_AFTER_ANCHOR_MS = 3 * HOUR_MS  # an anchor needs this much quiet after it
_FAR_KM = 2500.0  # impossible_travel goes at least this far (well above the 2,000 asked)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km (R = 6371 km), as seed 002's geo-velocity computes it.

    >>> round(haversine_km(51.5074, -0.1278, 48.8566, 2.3522))
    344
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def ip_country(ip: str) -> str | None:
    """The country of an IP of this simulator's scheme; ``"ANON"`` for an anonymous network.

    >>> ip_country(COUNTRY_IP_BLOCKS["US"] + ".1.2"), ip_country("203.0.113.7"), ip_country("::1")
    ('US', 'ANON', None)
    """
    if ip.startswith(ANONYMOUS_IP_PREFIX):
        return "ANON"
    parts = ip.split(".")
    if len(parts) != 4:
        return None
    return _COUNTRY_BY_BLOCK.get(f"{parts[0]}.{parts[1]}")


def _merchant_id(number: int) -> str:
    return f"m-{number:04d}"


def _merchant_category(number: int) -> str:
    if number >= _ONLINE_MERCHANT_BASE:
        return _ONLINE_CATEGORIES[(number * 7) % len(_ONLINE_CATEGORIES)]
    return _CATEGORIES[(number * 7) % len(_CATEGORIES)]


def _city_merchant(city_index: int, j: int) -> int:
    return 1000 + city_index * _MERCHANTS_PER_CITY + j


def _jitter(rng: random.Random, lat: float, lon: float, radius_km: float) -> tuple[float, float]:
    """A uniformly random point within ``radius_km`` of (lat, lon)."""
    d = radius_km * math.sqrt(rng.random())
    theta = rng.random() * 2 * math.pi
    dlat = d * math.cos(theta) / 111.32
    dlon = d * math.sin(theta) / (111.32 * max(0.05, math.cos(math.radians(lat))))
    return round(lat + dlat, 6), round(lon + dlon, 6)


def _card_suffix(k: int) -> str:
    """a, b, ..., z, a1, b1, ... for the k-th card of a user."""
    letter = chr(ord("a") + k % 26)
    return letter if k < 26 else f"{letter}{k // 26}"


def _device(rng: random.Random) -> str:
    return f"dev-{rng.getrandbits(32):08x}"


@dataclass
class _User:
    index: int  # 0-based; user_id is user_<index + 1>
    user_id: str
    first_name: str
    last_name: str
    max_speed_kmh: float
    city_index: int
    home_lat: float
    home_lon: float
    zipcode: str
    typical: float  # typical spend
    cards: int
    merchants: list[int]
    devices: list[str]
    ips: list[str]
    daily_rate: float  # normal transactions per day, all cards together
    jitter_km: float
    next_card: int = 0  # next card suffix number to hand out on reissue

    @property
    def city(self) -> City:
        return CITIES[self.city_index]

    def profile(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "max_speed_kmh": self.max_speed_kmh,
            "home_lat": self.home_lat,
            "home_lon": self.home_lon,
            "home_country": self.city.country,
            "review_threshold": None,
            "decline_threshold": None,
        }


def _build_users(users: int, seed: int) -> list[_User]:
    if users < 0:
        raise ValueError(f"users must be >= 0, got {users}")
    rng = random.Random(f"fraudstream-demo-users-{seed}")
    city_weights = [2.0 if c.country in {"US", "GB", "DE", "FR"} else 1.0 for c in CITIES]
    speed_values = [s for s, _ in _SPEEDS]
    speed_weights = [w for _, w in _SPEEDS]
    out: list[_User] = []
    for i in range(len(DEMO_USERS) + users):
        if i < len(DEMO_USERS):
            seed_user = DEMO_USERS[i]
            city_index = CITIES.index(_CITY_BY_NAME[_DEMO_HOME_CITY[i]])
            first, last = str(seed_user["first_name"]), str(seed_user["last_name"])
            speed = float(seed_user["max_speed_kmh"])
            home_lat, home_lon = float(seed_user["home_lat"]), float(seed_user["home_lon"])
            zipcode = CITIES[city_index].zipcodes[0]
        else:
            city_index = rng.choices(range(len(CITIES)), weights=city_weights)[0]
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            speed = rng.choices(speed_values, weights=speed_weights)[0]
            city = CITIES[city_index]
            home_lat, home_lon = _jitter(rng, city.lat, city.lon, 8.0)
            zipcode = rng.choice(city.zipcodes)
        cards = 1 if rng.random() < 0.7 else 2
        country = CITIES[city_index].country
        block = COUNTRY_IP_BLOCKS[country]
        n = i + 1
        ips = [f"{block}.{(n >> 8) & 127}.{n & 255}"]
        if rng.random() < 0.5:
            ips.append(f"{block}.{128 + ((n >> 8) & 127)}.{n & 255}")
        # Normal transactions are >= 45 min apart; two points within jitter_km of home are at
        # most 2 * jitter_km apart, so the implied speed stays below 0.6 * max_speed.
        jitter_km = min(5.0, 0.3 * speed * _MIN_GAP_MS / HOUR_MS)
        out.append(
            _User(
                index=i,
                user_id=f"user_{n}",
                first_name=first,
                last_name=last,
                max_speed_kmh=speed,
                city_index=city_index,
                home_lat=home_lat,
                home_lon=home_lon,
                zipcode=zipcode,
                typical=round(math.exp(rng.uniform(math.log(20.0), math.log(150.0))), 2),
                cards=cards,
                merchants=rng.sample(range(_MERCHANTS_PER_CITY), rng.randint(5, 12)),
                devices=[_device(rng) for _ in range(rng.randint(1, 2))],
                ips=ips,
                daily_rate=cards * rng.uniform(1.5, 4.0),
                jitter_km=jitter_km,
                next_card=cards,
            )
        )
        out[-1].merchants = [_city_merchant(city_index, j) for j in out[-1].merchants]
    return out


def demo_profiles(users: int = 200, seed: int = 7) -> list[dict[str, Any]]:
    """Profiles (DESIGN.md contract) of the 4 seed users followed by ``users`` generated ones.

    >>> profiles = demo_profiles(users=2)
    >>> [(p["user_id"], p["first_name"], p["max_speed_kmh"]) for p in profiles[:2]]
    [('user_1', 'Lena', 10.0), ('user_2', 'Elias', 100.0)]
    >>> len(profiles)
    6
    """
    return [user.profile() for user in _build_users(users, seed)]


@dataclass
class _Draft:
    """A record under construction; ``fields`` becomes the output dict."""

    ts: int
    user: int
    slot: int  # the user's card slot (0 or 1); the card id is decided in time order
    fields: dict[str, Any]
    seq: int = 0  # tie-breaker: creation order
    reissue: bool = False  # last record of an episode after which the card is reissued
    anomaly_factor: float = 0.0  # amount_anomaly: amount = factor * running average


def _normal_fields(rng: random.Random, user: _User) -> dict[str, Any]:
    lat, lon = _jitter(rng, user.home_lat, user.home_lon, user.jitter_km)
    merchant = rng.choice(user.merchants)
    amount = _usual_amount(rng, user.typical)
    devices = user.devices
    return {
        "amount": round(amount, 2),
        "lat": lat,
        "lon": lon,
        "zipcode": user.zipcode,
        "merchant_id": _merchant_id(merchant),
        "merchant_category": _merchant_category(merchant),
        "country": user.city.country,
        "channel": "pos" if rng.random() < 0.65 else "online",
        "device_id": devices[0] if len(devices) == 1 or rng.random() < 0.8 else devices[1],
        "ip": user.ips[0] if len(user.ips) == 1 or rng.random() < 0.7 else user.ips[1],
        "scenario": "normal",
        "is_fraud": False,
    }


def _usual_amount(rng: random.Random, typical: float) -> float:
    """Lognormal around ``typical``, truncated to [typical / 2.5, typical * 2.5].

    Seed 001's running average of normal amounts then stays in the same range, so a normal
    amount is never more than 6.25 x the average: ``amount_anomaly`` (8 x) never fires on it.
    """
    while True:
        amount = rng.lognormvariate(math.log(typical), 0.4)
        if typical / 2.5 <= amount <= typical * 2.5:
            return amount


def _local_hour(rng: random.Random) -> float:
    if rng.random() < 0.03:  # unusual-hour noise: legitimate, any time of day
        return rng.uniform(0.0, 24.0)
    return min(23.0, max(7.0, rng.gauss(14.0, 3.5)))


def _normal_times(rng: random.Random, user: _User, n: int, start_ms: int, days: float) -> list[int]:
    offset_ms = int(user.city.utc_offset * HOUR_MS)
    whole_days = max(1, math.ceil(days))
    times = []
    for _ in range(n):
        day = min(int(rng.random() * days), whole_days - 1)
        t = start_ms + day * DAY_MS + int(_local_hour(rng) * HOUR_MS) - offset_ms
        while t < start_ms:
            t += DAY_MS
        times.append(t + rng.randrange(MINUTE_MS))
    times.sort()
    for k in range(1, n):
        if times[k] < times[k - 1] + _MIN_GAP_MS:
            times[k] = times[k - 1] + _MIN_GAP_MS + rng.randrange(15 * MINUTE_MS)
    return times


def _episode_size(rng: random.Random, scenario: str) -> int:
    if scenario == "velocity":
        return rng.randint(6, 8)
    if scenario == "card_testing":
        return rng.randint(3, 5)
    if scenario == "small_then_large":
        return 2
    return 1


def _plan_episodes(rng: random.Random, count: int, fraud_rate: float) -> list[tuple[str, int]]:
    """Fraud episodes (scenario, number of records) adding up to about count * fraud_rate."""
    target = round(count * fraud_rate)
    episodes: list[tuple[str, int]] = []
    total = 0
    if fraud_rate > 0 and count >= 2000:
        for scenario in FRAUD_SCENARIOS:
            size = _episode_size(rng, scenario)
            episodes.append((scenario, size))
            total += size
    names = list(_EPISODE_WEIGHTS)
    weights = list(_EPISODE_WEIGHTS.values())
    misses = 0
    while total < target and misses < 50:
        scenario = rng.choices(names, weights=weights)[0]
        size = _episode_size(rng, scenario)
        if total + size > target:
            misses += 1
            continue
        episodes.append((scenario, size))
        total += size
    rng.shuffle(episodes)
    # Lena Whitaker's impossible_travel is the first one placed (see demo_records).
    episodes.sort(key=lambda e: e[0] != "impossible_travel")
    return episodes


def _episode(
    rng: random.Random,
    scenario: str,
    size: int,
    user: _User,
    anchor: _Draft,
) -> list[_Draft]:
    """The records of one fraud episode, anchored on a normal transaction ``anchor``."""
    base = dict(anchor.fields)
    base.update(scenario=scenario, is_fraud=True)
    t0 = anchor.ts
    drafts: list[_Draft] = []

    def add(ts: int, **changes: Any) -> None:
        fields = dict(base)
        fields.update(changes)
        drafts.append(_Draft(ts=ts, user=user.index, slot=anchor.slot, fields=fields))

    def usual_amount(low: float, high: float) -> float:
        return round(user.typical * rng.uniform(low, high), 2)

    if scenario == "impossible_travel":
        here = (float(base["lat"]), float(base["lon"]))
        far = [
            k
            for k, c in enumerate(CITIES)
            if haversine_km(here[0], here[1], c.lat, c.lon) > _FAR_KM
        ]
        k = rng.choice(far)
        city = CITIES[k]
        lat, lon = _jitter(rng, city.lat, city.lon, 5.0)
        merchant = _city_merchant(k, rng.randrange(_MERCHANTS_PER_CITY))
        add(
            t0 + rng.randint(12 * MINUTE_MS, 40 * MINUTE_MS),
            amount=usual_amount(1.0, 4.0),
            lat=lat,
            lon=lon,
            zipcode=rng.choice(city.zipcodes),
            country=city.country,
            merchant_id=_merchant_id(merchant),
            merchant_category=_merchant_category(merchant),
            channel="pos",
            device_id=_device(rng),
            ip=f"{COUNTRY_IP_BLOCKS[city.country]}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        )
    elif scenario == "velocity":
        start = t0 + rng.randint(5 * MINUTE_MS, 30 * MINUTE_MS)
        offsets = sorted(rng.sample(range(20_000), size))
        merchant = _ONLINE_MERCHANT_BASE + rng.randrange(1000)
        device = _device(rng)  # a fraudster's burst comes from their own device
        for off in offsets:
            add(
                start + off,
                amount=usual_amount(0.5, 1.5),
                merchant_id=_merchant_id(merchant),
                merchant_category=_merchant_category(merchant),
                channel="online",
                device_id=device,
            )
    elif scenario == "card_testing":
        ts = t0 + rng.randint(5 * MINUTE_MS, 30 * MINUTE_MS)
        merchants = rng.sample(range(_ONLINE_MERCHANT_BASE, _ONLINE_MERCHANT_BASE + 1000), size)
        for j, merchant in enumerate(merchants):
            if j:
                ts += rng.randint(40_000, 70_000)  # 5 records span < 5 min, never 5 in 30 s
            add(
                ts,
                amount=round(rng.uniform(0.50, 2.00), 2),
                merchant_id=_merchant_id(merchant),
                merchant_category=_merchant_category(merchant),
                channel="online",
            )
    elif scenario == "small_then_large":
        ts = t0 + rng.randint(5 * MINUTE_MS, 30 * MINUTE_MS)
        small = _ONLINE_MERCHANT_BASE + rng.randrange(1000)
        add(
            ts,
            amount=round(rng.uniform(0.05, 0.99), 2),
            merchant_id=_merchant_id(small),
            merchant_category=_merchant_category(small),
            channel="online",
        )
        large = _city_merchant(user.city_index, rng.randrange(_MERCHANTS_PER_CITY))
        add(
            ts + rng.randint(3_000, 30_000),
            amount=round(rng.uniform(600.0, 2000.0), 2),
            merchant_id=_merchant_id(large),
            merchant_category="electronics",
            channel=rng.choice(("pos", "online")),
        )
    elif scenario == "zip_mismatch":
        others = [z for z in user.city.zipcodes if z != base["zipcode"]]
        add(
            t0 + rng.randint(2 * MINUTE_MS, 8 * MINUTE_MS),
            amount=usual_amount(0.5, 2.0),
            zipcode=rng.choice(others),
            channel="pos",
        )
    elif scenario == "amount_anomaly":
        merchant = _city_merchant(user.city_index, rng.randrange(_MERCHANTS_PER_CITY))
        add(
            t0 + rng.randint(20 * MINUTE_MS, 45 * MINUTE_MS),
            amount=0.0,  # set from the card's running average, in time order
            merchant_id=_merchant_id(merchant),
            merchant_category=rng.choice(("electronics", "travel", "retail")),
        )
        drafts[-1].anomaly_factor = rng.uniform(10.5, 16.0)
    elif scenario == "new_device":
        add(
            t0 + rng.randint(20 * MINUTE_MS, 90 * MINUTE_MS),
            amount=usual_amount(1.0, 2.5),
            channel="online",
            device_id=_device(rng),
        )
    elif scenario == "anonymous_network":
        add(
            t0 + rng.randint(20 * MINUTE_MS, 90 * MINUTE_MS),
            amount=usual_amount(1.0, 2.5),
            channel="online",
            ip=f"{ANONYMOUS_IP_PREFIX}{rng.randrange(1, 255)}",
        )
    else:  # pragma: no cover - _EPISODE_WEIGHTS and this function list the same names
        raise ValueError(f"unknown scenario {scenario!r}")
    drafts[-1].reissue = scenario in _REISSUE_AFTER
    return drafts


def demo_records(
    count: int = 20_000,
    users: int = 200,
    seed: int = 7,
    start_ms: int = 1_767_225_600_000,
    fraud_rate: float = 0.02,
) -> list[dict[str, Any]]:
    """Exactly ``count`` demo transactions sorted by timestamp, labelled.

    ``users`` generated users join the 4 seed users; about ``count * fraud_rate`` records are
    injected frauds (every fraud scenario at least once when ``count >= 2000`` and
    ``fraud_rate > 0``), the rest ``normal``. Transaction ids are ``tx-000001`` ... in time
    order. The span is a few weeks for the defaults (a few transactions a day per card).

    >>> records = demo_records(count=50, users=5)
    >>> len(records), records[0]["transaction_id"]
    (50, 'tx-000001')
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0.0 <= fraud_rate <= 0.2:
        raise ValueError(f"fraud_rate must be within [0, 0.2], got {fraud_rate}")
    population = _build_users(users, seed)
    rng = random.Random(f"fraudstream-demo-records-{seed}")

    episodes = _plan_episodes(rng, count, fraud_rate)
    fraud_total = sum(size for _, size in episodes)
    normal_count = count - fraud_total

    # Normal traffic: each user gets a share of the records proportional to their rate.
    rates = [u.daily_rate for u in population]
    days = max(1.0, normal_count / sum(rates))
    per_user = [0] * len(population)
    for k in rng.choices(range(len(population)), weights=rates, k=normal_count):
        per_user[k] += 1
    timelines: list[list[_Draft]] = []
    for user, n in zip(population, per_user, strict=True):
        line = []
        for ts in _normal_times(rng, user, n, start_ms, days):
            slot = 0 if user.cards == 1 or rng.random() < 0.65 else 1
            line.append(_Draft(ts=ts, user=user.index, slot=slot, fields=_normal_fields(rng, user)))
        timelines.append(line)

    # Anchors: normal transactions followed by at least 3 quiet hours (or the user's last).
    anchors: list[list[int]] = []
    for line in timelines:
        ok = [
            k
            for k in range(len(line))
            if k + 1 == len(line) or line[k + 1].ts - line[k].ts >= _QUIET_AFTER_ANCHOR_MS
        ]
        rng.shuffle(ok)
        anchors.append(ok)

    fraud: list[_Draft] = []
    shortfall = 0
    lena_done = False
    slow_users = [u.index for u in population if u.max_speed_kmh < 1000]
    for scenario, size in episodes:
        candidates = slow_users if scenario == "impossible_travel" else range(len(population))
        if scenario == "impossible_travel" and not lena_done and anchors[0]:
            chosen: int | None = 0
            lena_done = True
        else:
            usable = [u for u in candidates if anchors[u]]
            chosen = rng.choice(usable) if usable else None
        if chosen is None:
            shortfall += size
            continue
        anchor = timelines[chosen][anchors[chosen].pop()]
        fraud.extend(_episode(rng, scenario, size, population[chosen], anchor))

    # Top up with normal records (only when anchors ran out), after each user's last one.
    for _ in range(shortfall):
        user = population[rng.randrange(len(population))]
        line = timelines[user.index]
        last = line[-1].ts if line else start_ms
        ts = last + _MIN_GAP_MS + rng.randrange(DAY_MS)
        line.append(_Draft(ts=ts, user=user.index, slot=0, fields=_normal_fields(rng, user)))

    drafts = [d for line in timelines for d in line] + fraud
    for k, draft in enumerate(drafts):
        draft.seq = k
    drafts.sort(key=lambda d: (d.ts, d.seq))
    return _finish(drafts, population)


def _finish(drafts: Sequence[_Draft], population: Sequence[_User]) -> list[dict[str, Any]]:
    """Card ids (with reissues), amount_anomaly amounts and transaction ids, in time order.

    Seed 001's card history (last zipcode, last time, running average) is replayed here so an
    ``amount_anomaly`` amount is > 10 x the average the detector will hold at that moment.
    """
    width = max(6, len(str(len(drafts))))
    cards: dict[tuple[int, int], str] = {}
    history: dict[str, tuple[str, int, float]] = {}  # card -> (zipcode, time, average)
    out: list[dict[str, Any]] = []
    for n, draft in enumerate(drafts, start=1):
        user = population[draft.user]
        key = (draft.user, draft.slot)
        card = cards.get(key)
        if card is None:
            card = cards[key] = f"card-{user.index + 1:04d}-{_card_suffix(draft.slot)}"
        fields = draft.fields
        zipcode = str(fields["zipcode"])
        if draft.anomaly_factor and card in history:
            fields["amount"] = round(history[card][2] * draft.anomaly_factor, 2)
        amount = float(fields["amount"])
        past = history.get(card)
        if past is None:
            history[card] = (zipcode, draft.ts, amount)
        elif draft.ts - past[1] < 600_000 and zipcode != past[0]:
            pass  # zip_mismatch fires: history unchanged
        elif amount > 8 * past[2]:
            pass  # amount_anomaly fires: history unchanged
        else:
            history[card] = (zipcode, draft.ts, (past[2] + amount) / 2)
        record: dict[str, Any] = {
            "transaction_id": f"tx-{n:0{width}d}",
            "card_id": card,
            "user_id": user.user_id,
            "timestamp": draft.ts,
            **fields,
        }
        out.append(record)
        if draft.reissue:
            cards[key] = f"card-{user.index + 1:04d}-{_card_suffix(user.next_card)}"
            user.next_card += 1
    return out


def write_profiles(path: str | Path, profiles: Iterable[Mapping[str, Any]]) -> Path:
    """Write profiles to ``path`` as YAML (``.yaml``/``.yml``), JSON, CSV or Parquet, by suffix.

    YAML and JSON hold ``{"profiles": [...]}``; CSV has a header row of
    :data:`PROFILE_FIELDS` and empty cells for nulls; Parquet has those columns (text as
    strings, numbers as doubles, nulls as nulls). CSV and Parquet load fastest.
    """
    path = Path(path)
    rows = [{name: p.get(name) for name in PROFILE_FIELDS} for p in profiles]
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        text = yaml.safe_dump({"profiles": rows}, sort_keys=False, allow_unicode=True)
        path.write_text(text, encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps({"profiles": rows}, indent=2) + "\n", encoding="utf-8")
    elif suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=PROFILE_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        texts = ("user_id", "first_name", "last_name", "home_country")
        schema = pa.schema(
            [(name, pa.string() if name in texts else pa.float64()) for name in PROFILE_FIELDS]
        )
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    else:
        raise ValueError(
            f"unsupported profiles file type {path.suffix!r}: use .yaml, .json, .csv or .parquet"
        )
    return path
