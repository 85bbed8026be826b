"""What the operator does for a Meeting: plain async functions with named parameters, testable
without kopf. ``main.py`` adapts kopf's calls to them and maps their typed errors to kopf's retries.

- :func:`reconcile_meeting` (create, resume, spec update): register the meeting with the gateway,
  resolve the webhook Secret and start the simulator Job when ``spec.simulate`` asks for one.
- :func:`mirror_status` (timer): copy the gateway's progress into ``status``, follow the simulator
  Job (ending the meeting when it succeeded), apply ``retention.afterSeconds``.
- :func:`finalize_meeting` (deletion): stop the simulator and apply ``retention.policy``.

Everything is idempotent. Failures become conditions in ``status.conditions`` and, when a condition
changes, a Kubernetes Event; then they are raised (typed) for the adapter to choose the retry.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Mapping, MutableMapping
from typing import Any, cast

import kopf

from audioflow.core.settings import Settings
from audioflow.operator.gateway import (
    Gateway,
    GatewayError,
    GatewayUnavailable,
    MeetingExists,
    MeetingNotFound,
)
from audioflow.operator.kube import Kube, KubeNotFound, ObjectRef
from audioflow.operator.model import (
    API_VERSION,
    COMPLETED,
    FINISHED,
    GATEWAY_REACHABLE,
    KIND,
    REGISTERED,
    SIMULATED,
    FormatConflict,
    InvalidSpec,
    MeetingSpec,
    SecretRef,
    condition_status,
    job_name,
    now_iso,
    parse_iso,
    same_format,
    set_condition,
    status_from_meeting,
)
from audioflow.operator.simulate import build_job, job_state

Logger = logging.Logger | logging.LoggerAdapter[Any]


class SimulatorSecretMissing(Exception):
    """The webhook Secret the simulator needs does not exist (yet), or lacks the key."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StatusUpdate:
    """Accumulates status fields and conditions; tells which conditions changed since ``status``."""

    def __init__(self, status: Mapping[str, Any], generation: int | None, now: str) -> None:
        self.before: list[Mapping[str, Any]] = list(status.get("conditions") or [])
        self.conditions: list[dict[str, Any]] = [dict(c) for c in self.before]
        self.fields: dict[str, Any] = {}
        self.generation = generation
        self.now = now

    def condition(self, type: str, ok: bool | None, reason: str, message: str = "") -> bool:
        """Set a condition; True when its status differs from the stored one (a transition)."""
        self.conditions = set_condition(
            self.conditions, type, ok, reason, message, now=self.now, generation=self.generation
        )
        return condition_status(self.before, type) != condition_status(self.conditions, type)

    def apply(self, patch: MutableMapping[str, Any]) -> None:
        status = patch.setdefault("status", {})
        status.update(self.fields)
        if self.conditions != [dict(c) for c in self.before]:
            status["conditions"] = self.conditions


def _identity(body: Mapping[str, Any]) -> tuple[str, str, int | None, ObjectRef]:
    meta = body.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    generation = meta.get("generation")
    return (
        name,
        namespace,
        generation if isinstance(generation, int) else None,
        ObjectRef.of(body, API_VERSION, KIND),
    )


async def _register(spec: MeetingSpec, gateway: Gateway) -> tuple[dict[str, Any], bool]:
    """Create the gateway's meeting, or accept the existing one if its format matches.
    Returns the meeting and whether it was created now."""
    try:
        return await gateway.create_meeting(spec.meeting_id, spec.audio), True
    except MeetingExists:
        meeting = await gateway.get_meeting(spec.meeting_id)
    if not same_format(meeting, spec.audio):
        fmt = meeting.get("format") or {}
        raise FormatConflict(
            f"the gateway already has meeting {spec.meeting_id!r} with {fmt.get('sample_rate')} Hz, "
            f"{fmt.get('channels')} channel(s), {fmt.get('bits')}-bit; spec.audio asks for "
            f"{spec.audio.describe()}"
        )
    return meeting, False


async def _gateway_failed(
    exc: GatewayError | FormatConflict, update: StatusUpdate, kube: Kube, ref: ObjectRef, logger: Logger
) -> None:
    """Record a gateway failure as conditions (and an Event when they change)."""
    if isinstance(exc, GatewayUnavailable):
        changed = update.condition(GATEWAY_REACHABLE, False, exc.reason, exc.message)
    else:
        update.condition(GATEWAY_REACHABLE, True, "Connected", "the gateway answers")
        changed = update.condition(REGISTERED, False, exc.reason, str(exc))
    logger.warning("gateway: %s", exc)
    if changed:
        await kube.record_event(ref, type="Warning", reason=exc.reason, message=str(exc))


def _secret_ref(spec: MeetingSpec, settings: Settings) -> SecretRef:
    if spec.webhook_secret is not None:
        return spec.webhook_secret
    if settings.webhook_secret_name:
        return SecretRef(settings.webhook_secret_name, settings.webhook_secret_key)
    raise InvalidSpec(
        "spec.simulate needs spec.webhookSecretRef "
        "(the operator has no default: AUDIOFLOW_WEBHOOK_SECRET_NAME is unset)"
    )


async def _start_simulator(
    *,
    body: Mapping[str, Any],
    spec: MeetingSpec,
    kube: Kube,
    settings: Settings,
    update: StatusUpdate,
    logger: Logger,
) -> None:
    name, namespace, _, ref = _identity(body)
    try:
        secret = _secret_ref(spec, settings)
        try:
            keys = await kube.secret_keys(namespace, secret.name)
        except KubeNotFound:
            raise SimulatorSecretMissing(
                f"Secret {secret.name!r} (spec.webhookSecretRef) does not exist", "SecretNotFound"
            ) from None
        if secret.key not in keys:
            raise SimulatorSecretMissing(
                f"Secret {secret.name!r} has no key {secret.key!r}", "SecretKeyNotFound"
            )
    except (InvalidSpec, SimulatorSecretMissing) as exc:
        reason = exc.reason
        if update.condition(SIMULATED, False, reason, str(exc)):
            await kube.record_event(ref, type="Warning", reason=reason, message=str(exc))
        raise
    job = build_job(
        meeting_name=name,
        spec=spec,
        secret=secret,
        gateway_url=settings.gateway_url,
        image=settings.simulator_image,
    )
    kopf.adopt(job, owner=kopf.Body(cast(kopf.RawBody, dict(body))))
    if await kube.create_job(namespace, job):
        logger.info("simulator Job %s started", job["metadata"]["name"])
        await kube.record_event(
            ref,
            type="Normal",
            reason="SimulatorStarted",
            message=f"Job {job['metadata']['name']} sends simulated audio to meeting {spec.meeting_id}",
        )
    update.fields["simulatorJob"] = job["metadata"]["name"]
    if condition_status(update.conditions, SIMULATED) != "True":
        update.condition(SIMULATED, False, "JobRunning", "the simulator Job is running")


async def reconcile_meeting(
    *,
    body: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    gateway: Gateway,
    kube: Kube,
    settings: Settings,
    patch: MutableMapping[str, Any],
    logger: Logger,
) -> None:
    """Create/resume/update: make the gateway know the meeting; start the simulator if asked."""
    name, _, generation, ref = _identity(body)
    update = StatusUpdate(status, generation, now_iso())
    try:
        try:
            meeting = MeetingSpec.parse(spec, name)
        except InvalidSpec as exc:
            if update.condition(REGISTERED, False, exc.reason, str(exc)):
                await kube.record_event(ref, type="Warning", reason=exc.reason, message=str(exc))
            raise
        try:
            info, created = await _register(meeting, gateway)
        except (GatewayError, FormatConflict) as exc:
            await _gateway_failed(exc, update, kube, ref, logger)
            raise
        update.condition(GATEWAY_REACHABLE, True, "Connected", "the gateway answers")
        update.condition(
            REGISTERED, True, "Registered", f"meeting {meeting.meeting_id} is known to the gateway"
        )
        if created:
            logger.info("meeting %s registered with the gateway", meeting.meeting_id)
            await kube.record_event(
                ref,
                type="Normal",
                reason="Registered",
                message=f"meeting {meeting.meeting_id} registered with the gateway "
                f"({meeting.audio.describe()})",
            )
        update.fields.update(
            status_from_meeting(info, gateway.recording_url(meeting.meeting_id, settings.public_url))
        )
        simulated = condition_status(update.before, SIMULATED) == "True"
        if meeting.simulate is not None and not simulated and update.fields["phase"] not in FINISHED:
            await _start_simulator(
                body=body, spec=meeting, kube=kube, settings=settings, update=update, logger=logger
            )
        if generation is not None:
            update.fields["observedGeneration"] = generation
    finally:
        update.apply(patch)


async def mirror_status(
    *,
    body: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    gateway: Gateway,
    kube: Kube,
    settings: Settings,
    patch: MutableMapping[str, Any],
    logger: Logger,
    now: datetime.datetime | None = None,
) -> None:
    """Timer: the gateway's progress into ``status``; follow the simulator; apply the TTL.
    A gateway that cannot be reached is a condition, not an error: the next tick tries again."""
    name, namespace, generation, ref = _identity(body)
    moment = now or datetime.datetime.now(datetime.UTC)
    update = StatusUpdate(status, generation, now_iso(moment))
    try:
        meeting = MeetingSpec.parse(spec, name)
    except InvalidSpec:
        return  # reconcile_meeting has reported it; there is nothing to mirror
    try:
        try:
            info = await gateway.get_meeting(meeting.meeting_id)
        except MeetingNotFound:
            if condition_status(update.before, REGISTERED) != "True":
                return  # not registered yet: reconcile_meeting does that (and retries)
            info, _ = await _register(meeting, gateway)  # the gateway lost it: register again
            logger.warning("meeting %s was missing on the gateway: registered again", meeting.meeting_id)
            await kube.record_event(
                ref,
                type="Warning",
                reason="Reregistered",
                message=f"meeting {meeting.meeting_id} was missing on the gateway; registered again",
            )
        update.condition(GATEWAY_REACHABLE, True, "Connected", "the gateway answers")
        update.condition(
            REGISTERED, True, "Registered", f"meeting {meeting.meeting_id} is known to the gateway"
        )
        url = gateway.recording_url(meeting.meeting_id, settings.public_url)
        fields = status_from_meeting(info, url)
        if meeting.simulate is not None:
            job = await kube.get_job(namespace, job_name(name))
            state = job_state(job)
            if state == "Succeeded":
                if update.condition(SIMULATED, True, "JobSucceeded", "the simulator sent every chunk"):
                    await kube.record_event(
                        ref, type="Normal", reason="SimulatorSucceeded", message="the simulator Job succeeded"
                    )
                if info.get("ended_at") is None and fields["phase"] not in FINISHED:
                    info = await gateway.end_meeting(meeting.meeting_id)
                    fields = status_from_meeting(info, url)
                    logger.info("simulation done: meeting %s ended", meeting.meeting_id)
                    await kube.record_event(
                        ref, type="Normal", reason="Ended", message="the simulation is done: meeting ended"
                    )
            elif state == "Failed":
                message = "the simulator Job failed (see its pods' logs)"
                if update.condition(SIMULATED, False, "JobFailed", message):
                    await kube.record_event(ref, type="Warning", reason="SimulatorFailed", message=message)
            elif state == "Running":
                update.condition(SIMULATED, False, "JobRunning", "the simulator Job is running")
            else:
                update.condition(SIMULATED, None, "JobNotFound", f"no Job {job_name(name)}")
    except (GatewayError, FormatConflict) as exc:
        await _gateway_failed(exc, update, kube, ref, logger)
        update.apply(patch)
        return

    phase = fields["phase"]
    changed = update.condition(COMPLETED, phase == "Completed", phase, f"the meeting is {phase.lower()}")
    if changed and phase in FINISHED:
        await kube.record_event(
            ref,
            type="Normal" if phase == "Completed" else "Warning",
            reason=phase,
            message=f"meeting {meeting.meeting_id}: {fields['chunksReceived']} chunks, "
            f"{fields['durationSeconds']:g} s recorded, {fields['gaps']} gap(s)",
        )
    completed_at = status.get("completedAt")
    if phase in FINISHED and not completed_at:
        completed_at = fields["completedAt"] = update.now
    update.fields.update(fields)
    update.apply(patch)

    after = meeting.retention_after_s
    expired = (
        after is not None
        and phase in FINISHED
        and isinstance(completed_at, str)
        and (moment - parse_iso(completed_at)).total_seconds() >= after
    )
    if expired:
        logger.info("meeting finished %s s ago: deleting the resource (retention.afterSeconds)", after)
        await kube.record_event(
            ref,
            type="Normal",
            reason="Expired",
            message=f"retention.afterSeconds ({after} s) passed since the meeting finished",
        )
        with contextlib.suppress(KubeNotFound):
            await kube.delete_meeting(namespace, name)


async def finalize_meeting(
    *,
    body: Mapping[str, Any],
    spec: Mapping[str, Any],
    gateway: Gateway,
    kube: Kube,
    settings: Settings,
    logger: Logger,
    elapsed_s: float = 0.0,
) -> None:
    """Deletion: stop the simulator, then apply ``retention.policy`` (Delete removes the gateway's
    meeting: rows, files, events). A gateway that stays down past ``AUDIOFLOW_FINALIZER_TIMEOUT_S``
    (``elapsed_s`` counts from the first attempt) is given up on, with a warning, so that the
    resource (and its namespace) can still go away."""
    name, namespace, _, ref = _identity(body)
    try:
        meeting = MeetingSpec.parse(spec, name)
    except InvalidSpec:
        logger.info("the spec was never valid: nothing was registered, nothing to clean up")
        return
    if meeting.simulate is not None:
        await kube.delete_job(namespace, job_name(name))  # stop the sending before deleting the data
    if meeting.retention_policy == "Keep":
        logger.info("retention Keep: meeting %s stays on the gateway", meeting.meeting_id)
        return
    try:
        await gateway.delete_meeting(meeting.meeting_id)
    except MeetingNotFound:
        logger.info("meeting %s was already gone from the gateway", meeting.meeting_id)
        return
    except GatewayError as exc:
        if elapsed_s < settings.finalizer_timeout_s:
            raise
        message = (
            f"gave up deleting meeting {meeting.meeting_id} from the gateway after {elapsed_s:.0f} s: {exc}; "
            "delete it with DELETE /v1/meetings/{id}"
        )
        logger.warning("%s", message)
        await kube.record_event(ref, type="Warning", reason="RetentionAbandoned", message=message)
        return
    logger.info("retention Delete: meeting %s deleted from the gateway", meeting.meeting_id)
