"""The simulator Job of a Meeting with ``spec.simulate``: start it once the meeting is registered,
then follow it, ending the meeting when it succeeded. The Job's manifest is ``simulator_job.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import kopf

from audioflow.core.meeting_model import MeetingPublic
from audioflow.core.settings import Settings
from audioflow.operator.gateway import Gateway
from audioflow.operator.kube import Kube, KubeNotFound
from audioflow.operator.model import (
    FINISHED,
    SIMULATED,
    InvalidSpec,
    MeetingSpec,
    SecretRef,
    condition_status,
    job_name,
    status_from_meeting,
)
from audioflow.operator.resource import Logger, StatusUpdate, identity
from audioflow.operator.simulator_job import build_job, job_state


class SimulatorSecretMissing(Exception):
    """The webhook Secret the simulator needs does not exist (yet), or lacks the key."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _secret_ref(spec: MeetingSpec, settings: Settings) -> SecretRef:
    if spec.webhook_secret is not None:
        return spec.webhook_secret
    if settings.webhook_secret_name:
        return SecretRef(settings.webhook_secret_name, settings.webhook_secret_key)
    raise InvalidSpec(
        "spec.simulate needs spec.webhookSecretRef "
        "(the operator has no default: AUDIOFLOW_WEBHOOK_SECRET_NAME is unset)"
    )


async def start_simulator(
    *,
    body: Mapping[str, Any],
    spec: MeetingSpec,
    kube: Kube,
    settings: Settings,
    update: StatusUpdate,
    logger: Logger,
) -> None:
    name, namespace, _, ref = identity(body)
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


async def follow_simulator(
    *,
    body: Mapping[str, Any],
    spec: MeetingSpec,
    info: MeetingPublic,
    url: str,
    gateway: Gateway,
    kube: Kube,
    update: StatusUpdate,
    logger: Logger,
) -> dict[str, Any]:
    """The Job's state into the ``Simulated`` condition; once it succeeded, end the meeting. Returns
    the status fields of the gateway's meeting (``info``, or the ended one)."""
    name, namespace, _, ref = identity(body)
    fields = status_from_meeting(info, url)
    job = await kube.get_job(namespace, job_name(name))
    state = job_state(job)
    if state == "Succeeded":
        if update.condition(SIMULATED, True, "JobSucceeded", "the simulator sent every chunk"):
            await kube.record_event(
                ref, type="Normal", reason="SimulatorSucceeded", message="the simulator Job succeeded"
            )
        if info.ended_at is None and fields["phase"] not in FINISHED:
            info = await gateway.end_meeting(spec.meeting_id)
            fields = status_from_meeting(info, url)
            logger.info("simulation done: meeting %s ended", spec.meeting_id)
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
    return fields
