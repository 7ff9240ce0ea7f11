"""serving.sender: a sink's Redis round trips leave the commit path, one round at a time, and
staging goes on meanwhile without losing a newer value."""

from __future__ import annotations

import asyncio

from serving import sender
from serving.sender import WRITE_FAILURES, InBackground, Sender, forget_sent, snapshot


def test_a_field_staged_again_while_its_round_was_in_flight_stays_pending():
    pending = {"pane": {"0|/a": 1, "0|/b": 2}, "stats": {"0|accepted": 3}}
    sent = snapshot(pending)
    pending["pane"]["0|/a"] = 5  # a later batch, while the round was in flight
    pending["stats"]["0|accepted"] = 3  # staged again with the same value: Redis has it
    forget_sent(pending, sent)
    assert pending == {"pane": {"0|/a": 5}}


async def test_rounds_run_one_at_a_time_and_a_request_meanwhile_runs_right_after():
    gate, rounds = asyncio.Event(), []

    async def send() -> bool:
        rounds.append(len(rounds))
        await gate.wait()
        return True

    sender = Sender("test-one-at-a-time", send, lambda: 0)
    sender.request()
    await asyncio.sleep(0)
    sender.request()  # in flight: taken after it, once
    sender.request()
    assert rounds == [0]
    gate.set()
    await sender.drain()
    assert rounds == [0, 1]


async def test_a_failed_round_is_counted_and_tried_again_by_itself(monkeypatch, caplog):
    monkeypatch.setattr(sender, "RETRY_S", 0.01)
    answers = [False, False, True]  # Redis away for two rounds

    async def send() -> bool:
        return answers.pop(0)

    before = WRITE_FAILURES.labels("test-failed")._value.get()
    rounds = Sender("test-failed", send, lambda: 7, lambda: "ConnectionError: refused")
    rounds.request()  # one request: the retries need no commit to ask again
    await rounds.drain()
    assert answers == [] and rounds.failing == 0 and rounds.landed_ms is not None
    assert WRITE_FAILURES.labels("test-failed")._value.get() == before + 2
    said = [r.getMessage() for r in caplog.records if r.name == "serving.sender"]
    assert said == [
        "Redis writes of the test-failed projection fail (ConnectionError: refused); 7 fields "
        "kept, retried every 0 s",
        "Redis writes of the test-failed projection land again, after 0 s",
    ]


class Sink:
    def __init__(self) -> None:
        self.answers = [True, False, False]
        self.asked = 0

    async def lost(self) -> bool:
        self.asked += 1
        await asyncio.sleep(0.01)
        return self.answers.pop(0)

    async def flush(self) -> bool:
        return True

    def size(self) -> int:
        return 0


async def test_lost_answers_with_the_last_finished_check_without_waiting_for_redis():
    sink = Sink()
    wrapped = InBackground(sink, "test-lost")
    assert await wrapped.lost() is False  # the first check starts
    await asyncio.sleep(0)
    assert await wrapped.lost() is False and sink.asked == 1  # still in flight: not asked again
    await asyncio.sleep(0.05)
    assert await wrapped.lost() is True  # its answer, once; the next check starts
    await asyncio.sleep(0.05)
    assert await wrapped.lost() is False and sink.asked == 2  # the second's answer
