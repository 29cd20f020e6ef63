"""Dispatcher voice for the API, within the caller's scope: talk targets, listened talkgroups,
spoken messages; every talk session and spoken message is in the audit trail."""

from __future__ import annotations

from gateway.api.services.access import ForbiddenError, SignedIn
from gateway.auth.audit import AuditWriter
from gateway.auth.scope import IncidentOf, no_incidents
from gateway.runner import GatewayRunner
from gateway.voice.service import SayJob, VoiceService
from gateway.voice.speech import SpeechError, text_speech, wav_speech
from gateway.voice.targets import Target, TargetError, check_target, parse_target


class SayJobNotFoundError(LookupError):
    pass


class VoiceAccess:
    def __init__(
        self,
        voice: VoiceService,
        runner: GatewayRunner,
        audit: AuditWriter,
        caller: SignedIn,
        incident_of: IncidentOf = no_incidents,
    ) -> None:
        """`incident_of` places incident talkgroups (in memory: called on the event loop)."""
        self.voice = voice
        self.runner = runner
        self.audit = audit
        self.caller = caller
        self.incident_of = incident_of

    def _hears(self, tg: str) -> bool:
        return self.caller.scope.sees_talkgroup(tg, self.incident_of)

    def _unit_of(self, device: str) -> str | None:
        info = self.runner.control.directory.get(device)
        return info.unit if info is not None else None

    def target(self, text: str) -> Target:
        """The talk target `text` if the caller may talk to it, else TargetError (audited)."""
        name = self.caller.account.name
        try:
            target = parse_target(text)
            check_target(
                target,
                self.caller.scope,
                lambda tg: tg in self.runner.control.floors.talkgroups,
                self._unit_of,
                self.incident_of,
            )
        except TargetError as exc:
            self.audit.record(name, "voice_talk", text[:80], "denied", {"reason": exc.reason})
            raise
        return target

    def listened(self, text: str) -> list[str]:
        """The talkgroups of `a,b,…` (empty: every talkgroup in scope), all in scope."""
        self.caller.require("listen")
        known = list(self.runner.control.directory.talkgroups)
        wanted = [tg for tg in text.split(",") if tg] if text else None
        if wanted is None:
            return [tg for tg in known if self._hears(tg)]
        if len(wanted) > 254 or len(set(wanted)) != len(wanted):
            raise ValueError("at most 254 distinct talkgroups")
        for tg in wanted:
            if tg not in known:
                raise ValueError(f"no talkgroup {tg}")
            self.caller.require("listen", self._hears(tg), f"talkgroup {tg}")
        return wanted

    async def say(self, target_text: str, text: str | None, lang: str, wav: bytes | None) -> SayJob:
        """Speech from text or a WAV to `target_text`; SpeechError/TargetError when refused."""
        if (text is None) == (wav is None):
            raise SpeechError("give either text or a wav file")
        target = self.target(target_text)
        pcm = wav_speech(wav) if wav is not None else await text_speech(text or "", lang)
        job = self.voice.say(self.caller.account.name, target, pcm)
        self.audit.record(
            self.caller.account.name, "voice_say", target.text, "ok",
            {"job": job.id, "source": "wav" if wav is not None else f"text:{lang}",
             "seconds": round(job.duration_s, 2)},
        )  # fmt: skip
        return job

    def job(self, job_id: str) -> SayJob:
        job = self.voice.jobs.get(job_id)
        if job is None or (job.account != self.caller.account.name and not self.caller.scope.whole):
            raise SayJobNotFoundError(f"no spoken message {job_id}")
        return job


def require_talker(caller: SignedIn) -> None:
    if not caller.account.role.is_dispatcher or not caller.scope.may("command"):
        raise ForbiddenError(f"role {caller.account.role} has no dispatcher voice")
