"""What the operator does for a Meeting: plain async functions with named parameters, testable
without kopf. ``main.py`` adapts kopf's calls to them and maps their typed errors to kopf's retries.

- :func:`reconcile_meeting` (create, resume, spec update): register the meeting with the gateway and
  start the simulator Job when ``spec.simulate`` asks for one (``simulator.py``).
- :func:`mirror_status` (timer): copy the gateway's progress into ``status``, follow the simulator
  Job (``simulator.py``), apply ``retention.afterSeconds``.
- :func:`finalize_meeting` (deletion): stop the simulator and apply ``retention.policy``.

Everything is idempotent. Failures become conditions in ``status.conditions`` and, when a condition
changes, a Kubernetes Event; then they are raised (typed) for the adapter to choose the retry.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Mapping, MutableMapping
from typing import Any, TypedDict, Unpack

from audioflow.core.meeting_model import MeetingPublic
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
    COMPLETED,
    FINISHED,
    GATEWAY_REACHABLE,
    REGISTERED,
    SIMULATED,
    FormatConflict,
    InvalidSpec,
    MeetingSpec,
    condition_status,
    job_name,
    now_iso,
    parse_iso,
    same_format,
    status_from_meeting,
)
from audioflow.operator.resource import Logger, StatusUpdate, identity
from audioflow.operator.simulator import follow_simulator, start_simulator


async def _register(spec: MeetingSpec, gateway: Gateway) -> tuple[MeetingPublic, bool]:
    """Create the gateway's meeting, or accept the existing one if its format matches.
    Returns the meeting and whether it was created now."""
    try:
        return await gateway.create_meeting(spec.meeting_id, spec.audio), True
    except MeetingExists:
        meeting = await gateway.get_meeting(spec.meeting_id)
    if not same_format(meeting, spec.audio):
        fmt = meeting.format
        raise FormatConflict(
            f"the gateway already has meeting {spec.meeting_id!r} with {fmt.sample_rate} Hz, "
            f"{fmt.channels} channel(s), {fmt.bits}-bit; spec.audio asks for "
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


class StatusCall(TypedDict):
    """The arguments of the handlers that write ``status`` (:func:`reconcile_meeting`,
    :func:`mirror_status`): kopf's view of the Meeting, the operator's clients and settings, and the
    patch to fill."""

    body: Mapping[str, Any]
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    gateway: Gateway
    kube: Kube
    settings: Settings
    patch: MutableMapping[str, Any]
    logger: Logger


async def reconcile_meeting(**call: Unpack[StatusCall]) -> None:
    """Create/resume/update: make the gateway know the meeting; start the simulator if asked."""
    body, spec, status, patch = call["body"], call["spec"], call["status"], call["patch"]
    gateway, kube, settings, logger = call["gateway"], call["kube"], call["settings"], call["logger"]
    name, _, generation, ref = identity(body)
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
            await start_simulator(
                body=body, spec=meeting, kube=kube, settings=settings, update=update, logger=logger
            )
        if generation is not None:
            update.fields["observedGeneration"] = generation
    finally:
        update.apply(patch)


async def mirror_status(*, now: datetime.datetime | None = None, **call: Unpack[StatusCall]) -> None:
    """Timer: the gateway's progress into ``status``; follow the simulator; apply the TTL.
    A gateway that cannot be reached is a condition, not an error: the next tick tries again."""
    body, spec, status, patch = call["body"], call["spec"], call["status"], call["patch"]
    gateway, kube, settings, logger = call["gateway"], call["kube"], call["settings"], call["logger"]
    name, namespace, generation, ref = identity(body)
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
        if meeting.simulate is not None:
            fields = await follow_simulator(
                body=body,
                spec=meeting,
                info=info,
                url=url,
                gateway=gateway,
                kube=kube,
                update=update,
                logger=logger,
            )
        else:
            fields = status_from_meeting(info, url)
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
    name, namespace, _, ref = identity(body)
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
