"""Fraud scenarios, each one visit whose events are all labelled with the scenario's name.

bot: dozens of page views 80-900 ms apart from a data-centre `bot` device, no cart.
card_testing: a new account buys the cheapest product 8-25 times within minutes, a new card
each time. account_takeover: a known shopper's account, from a new device in another country,
buys dear products fast. no_session: an OrderCreated with no session and no clicks at all.

Shifted (World.shifted), each stealthier, as fraud adapts to a model: bots pause like people
(2-20 s); card testing places 3-6 orders minutes apart, half of them on one card, with cards
of the tester's own country; a takeover comes from the victim's own country; a sessionless
order pays with a card of the buyer's country, from there.
"""

from __future__ import annotations

from collections.abc import Callable

from generator.geo import ELSEWHERE, random_foreign_country
from generator.ids import random_token
from generator.population import new_card, new_device, new_shopper
from generator.visits import think_ms
from generator.world import PlannedEvent, Scenario, World
from streams.records import ClickType, Payment


def plan_bot_crawl(world: World, start_ms: int) -> list[PlannedEvent]:
    rng, products = world.rng, world.catalog.products
    crawler_id = random_token(rng, "u")  # a fresh cookie: bots rarely keep one
    visit = world.visit(crawler_id, new_device(rng, "US", "bot"), "USD", "bot")
    first, at_ms = rng.randrange(len(products)), start_ms
    for step in range(rng.randint(30, 80)):
        product = products[(first + step) % len(products)]
        url = f"/c/{product.category}" if step % 10 == 0 else product.url
        visit.click(ClickType.PAGE_VIEW, url, at_ms)
        at_ms += rng.randint(2_000, 20_000) if world.shifted else rng.randint(80, 900)
    return visit.events


def plan_card_testing(world: World, start_ms: int) -> list[PlannedEvent]:
    rng = world.rng
    tester = new_shopper(rng)
    visit = world.visit(tester.user_id, tester.devices[0], tester.currency, "card_testing")
    product = rng.choice(world.catalog.cheapest)
    visit.click(ClickType.PAGE_VIEW, product.url, start_ms)
    at_ms = start_ms + rng.randint(1500, 5000)
    visit.click(ClickType.ADD_TO_CART, product.url, at_ms)
    shifted = world.shifted
    kept = new_card(rng, tester.country) if shifted else None
    for _ in range(rng.randint(3, 6) if shifted else rng.randint(8, 25)):
        at_ms += rng.randint(60_000, 240_000) if shifted else rng.randint(2000, 15_000)
        visit.click(ClickType.CHECKOUT, "/checkout", at_ms)
        at_ms += rng.randint(800, 3000)
        if kept is not None:
            card = kept if rng.random() < 0.5 else new_card(rng, tester.country)
        else:
            card = new_card(rng, rng.choice(ELSEWHERE))
        visit.order([(product, 1)], Payment("card", card.fingerprint, card.country), at_ms)
    return visit.events


def plan_account_takeover(world: World, start_ms: int) -> list[PlannedEvent]:
    rng = world.rng
    victim = world.population.known_shopper()
    where = victim.country if world.shifted else random_foreign_country(rng, victim.country)
    device = new_device(rng, where)
    visit = world.visit(victim.user_id, device, victim.currency, "account_takeover")
    visit.click(ClickType.PAGE_VIEW, "/", start_ms)
    at_ms, lines = start_ms, []
    for product in rng.sample(world.catalog.dearest, rng.randint(1, 3)):
        at_ms += think_ms(rng, 2500, 0.5)
        visit.click(ClickType.PAGE_VIEW, product.url, at_ms)
        at_ms += think_ms(rng, 1500, 0.5)
        visit.click(ClickType.ADD_TO_CART, product.url, at_ms)
        lines.append((product, rng.randint(1, 3)))
    at_ms += think_ms(rng, 1500, 0.5)
    visit.click(ClickType.PAGE_VIEW, "/cart", at_ms)
    at_ms += think_ms(rng, 1500, 0.5)
    visit.click(ClickType.CHECKOUT, "/checkout", at_ms)
    card = victim.cards[0]  # the card saved in the account
    visit.order(
        lines, Payment("card", card.fingerprint, card.country), at_ms + rng.randint(2000, 8000)
    )
    return visit.events


def plan_sessionless_order(world: World, start_ms: int) -> list[PlannedEvent]:
    rng = world.rng
    buyer = world.population.known_shopper() if rng.random() < 0.5 else new_shopper(rng)
    where = buyer.country if world.shifted else random_foreign_country(rng, buyer.country)
    device = new_device(rng, where)
    visit = world.visit(buyer.user_id, device, buyer.currency, "no_session", with_session=False)
    lines = [
        (p, rng.randint(1, 2)) for p in rng.sample(world.catalog.products[:60], rng.randint(1, 3))
    ]
    card = new_card(rng, buyer.country if world.shifted else rng.choice(ELSEWHERE))
    visit.order(lines, Payment("card", card.fingerprint, card.country), start_ms)
    return visit.events


SCENARIOS: dict[Scenario, Callable[[World, int], list[PlannedEvent]]] = {
    "bot": plan_bot_crawl,
    "card_testing": plan_card_testing,
    "account_takeover": plan_account_takeover,
    "no_session": plan_sessionless_order,
}
