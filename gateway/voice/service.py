"""The console voice service: talker connections per account, talk and listen sessions, spoken
messages (`say`). Lives on the gateway's event loop next to the runner it reads floors from."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from codec.opus import Pcm16
from gateway.auth.roles import TALKER_PREFIX
from gateway.auth.scope import call_parties
from gateway.runner import GatewayRunner
from gateway.voice.link import NoticeSink, TalkerLink
from gateway.voice.listener import CALL_STREAM, ListenDecoder
from gateway.voice.speaker import FloorView, Notice, Speaker
from gateway.voice.targets import PCM_RATE, Target
from protocol.keys import call_key
from transport.client import ClientOptions, MqttClient, Will

log = logging.getLogger(__name__)

SAY_CHUNK: Final = PCM_RATE // 50  # 20 ms, the pace a microphone gives
SAY_WAIT_S: Final = 45.0  # queued longer than this (the floor's queue timeout is 30 s): give up
_SAY_JOBS_KEPT: Final = 200

SayState = Literal["queued", "waiting", "talking", "done", "denied", "preempted", "failed"]
Describe = Callable[[str], tuple[str | None, dict[str, float] | None]]


@dataclass(slots=True)
class SayJob:
    id: str
    account: str
    target: str
    duration_s: float
    created_at: float
    state: SayState = "queued"
    burst: int | None = None
    reason: str | None = None
    by: str | None = None
    notices: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id, "account": self.account, "target": self.target,
            "duration_s": round(self.duration_s, 3), "created_at": self.created_at,
            "state": self.state, "burst": self.burst, "reason": self.reason, "by": self.by,
        }  # fmt: skip


class VoiceService:
    def __init__(
        self,
        runner: GatewayRunner,
        describe: Describe,
        logger: logging.Logger | None = None,
    ) -> None:
        self.runner = runner
        self.describe = describe
        self.log = logger or log
        settings = runner.settings
        self._tls = ssl.create_default_context() if settings.broker.tls else None
        self._links: dict[str, TalkerLink] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._connections = itertools.count(1)
        self.jobs: OrderedDict[str, SayJob] = OrderedDict()
        self._job_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def _options(
        self, client_id: str, will: Will | None, subscriptions: list[tuple[str, int]]
    ) -> ClientOptions:
        s = self.runner.settings
        return s.broker.client_options(
            client_id, username=s.username, password=s.password, will=will,
            subscriptions=subscriptions, tls=self._tls,
        )  # fmt: skip

    def _client_id(self, what: str) -> str:
        return f"xixin-gateway-{self.runner.settings.instance}-{what}-{next(self._connections)}"

    # ---- floors as the gateway sees them (same event loop) ------------------------------------

    def floor_view(self, talker: str, target: Target) -> FloorView:
        floors = self.runner.control.floors

        def view() -> tuple[str | None, tuple[str, ...]]:
            if target.kind == "tg":
                floor = floors.get(target.id)
            else:
                floor = floors.get(call_key(talker, target.id))
            if floor is None:
                return None, ()
            return floor.holder, tuple(device for device, _ in floor.queue())

        return view

    def holder_of(self, talker: str | None) -> Callable[[str], str | None]:
        floors = self.runner.control.floors

        def holder(stream: str) -> str | None:
            if stream != CALL_STREAM:
                floor = floors.get(stream)
                return floor.holder if floor is not None else None
            if talker is None:
                return None
            for key, floor in floors.items():
                parties = call_parties(key)
                if parties is not None and talker in parties and floor.holder:
                    return floor.holder
            return None

        return holder

    # ---- talker connections -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def talker(self, account: str) -> AsyncIterator[TalkerLink]:
        """The account's talker connection while the context is open (shared, counted)."""
        lock = self._opening.setdefault(account, asyncio.Lock())
        async with lock:
            link = self._links.get(account)
            if link is None:
                link = TalkerLink(
                    TALKER_PREFIX + account, self._client_id(f"u-{account}"), self._options,
                    logger=self.log,
                )  # fmt: skip
                await link.open()
                self._links[account] = link
            link.users += 1
        try:
            yield link
        finally:
            async with lock:
                link.users -= 1
                if link.users == 0:
                    self._links.pop(account, None)
                    await link.close()

    def speaker(self, link: TalkerLink, target: Target, sink: NoticeSink) -> Speaker:
        speaker = Speaker(link.talker, target, self.floor_view(link.talker, target))
        link.attach(speaker, sink)
        return speaker

    # ---- listening ----------------------------------------------------------------------------

    def listen_decoder(self, talkgroups: list[str], own_talker: str | None) -> ListenDecoder:
        return ListenDecoder(
            talkgroups, own_talker, self.describe, self.holder_of(own_talker), logger=self.log
        )

    def listen_client(
        self, decoder: ListenDecoder, on_message: Callable[[str, bytes, int], None]
    ) -> MqttClient:
        return MqttClient(
            self._options(self._client_id("listen"), None, decoder.subscriptions()),
            on_message,
            logger=self.log,
        )

    # ---- spoken messages ----------------------------------------------------------------------

    def say(self, account: str, target: Target, pcm: Pcm16) -> SayJob:
        """Queue `pcm` to be spoken as `account` to `target`; the job runs in the background."""
        job = SayJob(
            f"say-{next(self._job_ids)}", account, target.text, len(pcm) / PCM_RATE, time.time()
        )
        self.jobs[job.id] = job
        while len(self.jobs) > _SAY_JOBS_KEPT:
            self.jobs.popitem(last=False)
        task = asyncio.create_task(self._speak(job, target, pcm), name=job.id)
        self._tasks.add(task)
        task.add_done_callback(self._job_done)
        return job

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("spoken message %s failed", task.get_name(), exc_info=task.exception())

    async def _speak(self, job: SayJob, target: Target, pcm: Pcm16) -> None:
        notices: asyncio.Queue[Notice] = asyncio.Queue()

        def note(notice: Notice) -> None:
            job.notices.append(notice.message())
            notices.put_nowait(notice)

        try:
            async with self.talker(job.account) as link:
                speaker = self.speaker(link, target, note)
                try:
                    if await self._wait_grant(job, link, speaker, notices):
                        await self._stream(job, link, speaker, pcm)
                finally:
                    link.detach(speaker)
        except Exception as exc:
            job.state, job.reason = "failed", str(exc) or type(exc).__name__
            raise

    async def _wait_grant(
        self, job: SayJob, link: TalkerLink, speaker: Speaker, notices: asyncio.Queue[Notice]
    ) -> bool:
        deadline = time.monotonic() + SAY_WAIT_S
        while True:
            if speaker.state == "idle" and job.state in ("queued", "waiting"):
                job.state = "waiting"
                link.press(speaker)
            try:
                notice = await asyncio.wait_for(notices.get(), deadline - time.monotonic())
            except TimeoutError:
                job.state, job.reason = "denied", "no_grant"
                return False
            if notice.state == "granted":
                job.state, job.burst = "talking", notice.burst
                return True
            if notice.state == "queued":
                job.by = notice.by
                continue
            job.state, job.reason = "denied", notice.reason
            return False

    async def _stream(self, job: SayJob, link: TalkerLink, speaker: Speaker, pcm: Pcm16) -> None:
        """Send the speech at the pace it is spoken, then release."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        data = pcm.astype("<i2").tobytes()
        step = SAY_CHUNK * 2
        for k, offset in enumerate(range(0, len(data), step)):
            delay = start + k * SAY_CHUNK / PCM_RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if speaker.state != "talking":  # pre-empted or revoked meanwhile
                last = job.notices[-1] if job.notices else {}
                job.state = "preempted" if last.get("state") == "preempted" else "denied"
                job.reason, job.by = last.get("reason"), last.get("by")
                return
            link.apply(speaker, speaker.pcm(data[offset : offset + step], time.monotonic()))
        link.apply(speaker, speaker.release(time.monotonic()))
        job.state = "done"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for link in list(self._links.values()):
            await link.close()
        self._links.clear()
