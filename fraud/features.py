"""The fraud features: what each is, its formula, and the pure folds that keep the state behind
them (state goes in as a plain dict and comes back changed; agents.fraud stores it).

An order at event time t is judged against what was released before it (engine.repartition:
the release order of the user's clicks and orders, and of each card's, IP's and device's
orders), windows over event time, each window (t - W, t] and counting the order itself.

User (state per user, the clicks and orders of the user):
  user_orders_10m, user_orders_1h  orders; a burst from one account is a bot or a thief
  user_amount_1h                   minor units of the order's currency (never mixed)
  user_cards_10m                   distinct cards: card testing from one account
  amount_z                         (amount - m) / max(s, m / 4, 1), m and s the user's
                                   exponentially weighted mean and deviation of earlier orders
                                   in that currency (alpha 0.3); 0 for a first order
  first_order                      1 when the user has no earlier order in that currency
  The session: the user's clicks on the order's device, less than 30 min apart, the last
  one at most 30 min before t (a user's other devices have sessions of their own); for an
  order that names no device (a v1 order), the user's latest session, and its device.
  no_recent_session                1 when there is no such session
  session_pages                    its page views
  session_age_s                    t - its first click, in seconds (0: none)
  no_cart                          1 when it has no add_to_cart (or there is none)
  fast_click_share                 share of the gaps between its clicks, in time order,
                                   under 1 s (bots); 0 when it has fewer than 4 gaps
  new_device, new_ip               1 when the user was seen before the order's device
                                   (address) was, and that was at most 1 h before t: an
                                   account taken over, or a new phone
Card, IP, device (state per key, the orders on it):
  card_orders_10m, card_orders_1h, card_amount_1h   velocity of one card (card testing,
                                   a stolen card spent fast)
  card_users                       distinct users on the card (at most 16 kept): one card,
                                   many accounts
  ip_orders_10m, ip_orders_1h, ip_users_1h          one address, many orders or accounts
  device_orders_10m, device_orders_1h, device_users one device, many orders or accounts
Order (no state, agents.fraud's scorer): small_order (EUR cents <= the policy's bound),
ip_card_country_mismatch (the address's country is not the card's), and *_eur: the amounts
in EUR cents through the policy's rates.

Duplicates (the same event id again) count once while the first is inside the 1 h window
of its key; a click once while its session lasts. A session keeps its first 512 clicks.

Retention: a user, card, IP or device unseen for PROFILE_TTL_MS (by release time: what
engine.repartition releases after it, duplicates included) is forgotten, and its next event
finds it new (first_order, card_users, new_device start again): state stays bounded by the
keys active in that time.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

MINUTE_MS = 60_000
SHORT_MS, LONG_MS = 10 * MINUTE_MS, 60 * MINUTE_MS  # the velocity windows
SESSION_GAP_MS = 30 * MINUTE_MS
FAST_GAP_MS = 1_000
MIN_CADENCE_GAPS = 4
ALPHA = 0.3  # weight of the newest order in the amount baseline
MAX_USERS = 16  # distinct users kept per card, device
MAX_KNOWN = 32  # devices and addresses kept per user
NEW_FOR_MS = 60 * MINUTE_MS  # a device or address first seen this recently is new
MAX_SESSION_CLICKS = 512  # clicks kept per session (dedup, cadence); later ones are not counted
PROFILE_TTL_MS = 90 * 24 * 60 * MINUTE_MS  # a key unseen this long is forgotten

USER_FEATURES = (
    "user_orders_10m", "user_orders_1h", "user_amount_1h", "user_cards_10m", "amount_z",
    "first_order", "no_recent_session", "session_pages", "session_age_s", "no_cart",
    "fast_click_share", "new_device", "new_ip",
)  # fmt: skip
KEY_FEATURES = {
    "card": ("card_orders_10m", "card_orders_1h", "card_amount_1h", "card_users"),
    "ip": ("ip_orders_10m", "ip_orders_1h", "ip_users_1h"),
    "device": ("device_orders_10m", "device_orders_1h", "device_users"),
}
ORDER_FEATURES = (
    "small_order", "ip_card_country_mismatch", "amount_eur", "user_amount_1h_eur",
    "card_amount_1h_eur",
)  # fmt: skip
FEATURES = frozenset(
    USER_FEATURES + ORDER_FEATURES + tuple(f for fs in KEY_FEATURES.values() for f in fs)
)


@dataclass(frozen=True, slots=True)
class Click:
    event_id: str
    time_ms: int
    page_view: bool
    add_to_cart: bool
    device: str
    ip: str


@dataclass(frozen=True, slots=True)
class Order:
    """What the features read of an OrderCreated."""

    event_id: str
    order_id: int
    user: str
    time_ms: int
    amount: int  # minor units
    currency: str
    card: str | None  # fingerprint
    card_country: str | None
    device: str | None
    ip: str | None


Features = dict[str, float]


def new_user() -> dict[str, Any]:
    """o: [[t, event id, amount, currency, card]] of the last hour; s: device -> its last
    session; h: the user's first activity; d, i: device, address -> [first, last seen];
    b: currency -> [n, mean, variance] of the amounts."""
    return {"o": [], "s": {}, "h": None, "d": {}, "i": {}, "b": {}}


def add_click(user: dict[str, Any], click: Click) -> None:
    """The click joins the user's session (or starts one, after a 30 min gap)."""
    t = click.time_ms
    _seen(user, t, click.device, click.ip)
    session = user["s"].get(click.device)
    if session is None or t - session["last"] >= SESSION_GAP_MS:
        session = user["s"][click.device] = {
            "first": t, "last": t, "pages": 0, "cart": 0, "clicks": [],
        }  # fmt: skip
    elif session["first"] - t >= SESSION_GAP_MS:
        return  # of an earlier session (a late click)
    clicks = session["clicks"]
    if len(clicks) >= MAX_SESSION_CLICKS or any(c[1] == click.event_id for c in clicks):
        return  # a duplicate, or past what a session keeps
    clicks.append([t, click.event_id])
    session["first"], session["last"] = min(session["first"], t), max(session["last"], t)
    session["pages"] += click.page_view
    session["cart"] |= click.add_to_cart


def add_user_order(user: dict[str, Any], order: Order) -> Features | None:
    """The order's user features, and the order kept in the user's state; None for a
    duplicate."""
    t, orders = order.time_ms, user["o"]
    if any(kept[1] == order.event_id for kept in orders):
        return None
    sessions, device = user["s"], order.device
    if device is None:  # a v1 order: the device of the user's latest session
        device = max(sessions, key=lambda d: sessions[d]["last"], default=None)
    session = sessions.get(device) if device is not None else None
    if session is not None and t - session["last"] > SESSION_GAP_MS:
        session = None  # over: no session before the order
    orders.append([t, order.event_id, order.amount, order.currency, order.card])
    recent = [o for o in orders if t - LONG_MS < o[0] <= t]
    short = [o for o in recent if o[0] > t - SHORT_MS]
    n, mean, var = user["b"].get(order.currency, (0, 0.0, 0.0))
    deviation = max(math.sqrt(var), mean / 4, 1.0)
    features: Features = {
        "user_orders_10m": len(short),
        "user_orders_1h": len(recent),
        "user_amount_1h": sum(o[2] for o in recent if o[3] == order.currency),
        "user_cards_10m": len({o[4] for o in short if o[4] is not None}),
        "amount_z": round((order.amount - mean) / deviation, 4) if n else 0.0,
        "first_order": 0 if n else 1,
        "no_recent_session": 0 if session else 1,
        "session_pages": session["pages"] if session else 0,
        "session_age_s": round((t - session["first"]) / 1000, 3) if session else 0.0,
        "no_cart": 0 if session and session["cart"] else 1,
        "fast_click_share": _fast_share(session) if session else 0.0,
        "new_device": _new(user, user["d"], device, t),
        "new_ip": _new(user, user["i"], order.ip, t),
    }
    if n:
        delta = order.amount - mean
        mean, var = mean + ALPHA * delta, (1 - ALPHA) * (var + ALPHA * delta * delta)
    else:
        mean, var = float(order.amount), 0.0
    user["b"][order.currency] = [n + 1, round(mean, 4), round(var, 4)]
    user["o"] = [o for o in orders if o[0] > max(o[0] for o in orders) - LONG_MS]
    _seen(user, t, order.device, order.ip)
    return features


def new_key() -> dict[str, Any]:
    """o: [[t, event id, amount, currency, user]] of the last hour; u: distinct users."""
    return {"o": [], "u": []}


def add_key_order(kind: str, key: dict[str, Any], order: Order) -> Features | None:
    """The order's features on one card, IP or device (`kind`), and the order kept; None for
    a duplicate."""
    t, orders = order.time_ms, key["o"]
    if any(kept[1] == order.event_id for kept in orders):
        return None
    orders.append([t, order.event_id, order.amount, order.currency, order.user])
    if order.user not in key["u"] and len(key["u"]) < MAX_USERS:
        key["u"].append(order.user)
    recent = [o for o in orders if t - LONG_MS < o[0] <= t]
    short = sum(o[0] > t - SHORT_MS for o in recent)
    key["o"] = [o for o in orders if o[0] > max(o[0] for o in orders) - LONG_MS]
    if kind == "card":
        amount = sum(o[2] for o in recent if o[3] == order.currency)
        return {
            "card_orders_10m": short, "card_orders_1h": len(recent), "card_amount_1h": amount,
            "card_users": len(key["u"]),
        }  # fmt: skip
    if kind == "ip":
        users = len({o[4] for o in recent})
        return {"ip_orders_10m": short, "ip_orders_1h": len(recent), "ip_users_1h": users}
    return {
        "device_orders_10m": short, "device_orders_1h": len(recent),
        "device_users": len(key["u"]),
    }  # fmt: skip


def _fast_share(session: dict[str, Any]) -> float:
    times = sorted(c[0] for c in session["clicks"])
    gaps = [b - a for a, b in itertools.pairwise(times)]
    fast = sum(gap < FAST_GAP_MS for gap in gaps)
    return round(fast / len(gaps), 4) if len(gaps) >= MIN_CADENCE_GAPS else 0.0


def _new(user: dict[str, Any], known: dict[str, list[int]], value: str | None, t: int) -> int:
    """1: the user was seen before `value` was (never: now), and that was at most
    NEW_FOR_MS before t; 0 for None (not known, so not new)."""
    if value is None or user["h"] is None:
        return 0
    first = known.get(value, [t])[0]
    return int(user["h"] < first and t - first <= NEW_FOR_MS)


def _seen(user: dict[str, Any], t: int, device: str | None, ip: str | None) -> None:
    """Device and address -> [first seen, last seen]; past MAX_KNOWN, the one seen least
    recently is forgotten."""
    user["h"] = t if user["h"] is None else min(user["h"], t)
    for known, value in ((user["d"], device), (user["i"], ip)):
        if value is not None:
            first, last = known.get(value, (t, t))
            known[value] = [min(first, t), max(last, t)]
            if len(known) > MAX_KNOWN:
                forgotten = min(known, key=lambda v: known[v][1])
                del known[forgotten]
                if known is user["d"]:
                    user["s"].pop(forgotten, None)  # a device's session goes with it
