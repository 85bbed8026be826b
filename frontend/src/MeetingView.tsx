import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";
import { audioUrl, download, eventsUrl, meetingPath } from "./api";
import { useErrors } from "./errors";
import { bytes, clock } from "./format";
import { ChunkGrid, LogPanel, TranscriptPanel } from "./panels";
import { Player, type PlayerHandle } from "./Player";
import { EventConnection, type ConnectionState } from "./socket";
import { initialState, reducer, segmentAt, transcript } from "./state";
import type { MeetingPublic } from "./types";

const cursorKey = (meetingId: string) => `audioflow.cursor.${meetingId}`;

interface Props {
  meetingId: string;
  token: string;
  summary: MeetingPublic | undefined; // from the list poll
}

export function MeetingView({ meetingId, token, summary }: Props) {
  const [state, dispatch] = useReducer(reducer, meetingId, initialState);
  const [connection, setConnection] = useState<ConnectionState>({ status: "closed" });
  const [position, setPosition] = useState(0);
  const [follow, setFollow] = useState(true);
  const player = useRef<PlayerHandle>(null);
  const { report } = useErrors();
  // Where the previous page load had got to (sessionStorage survives a reload). This load rebuilds the
  // whole state by replaying from the start, which is exact; reconnects within it resume with `since`.
  const [previousCursor] = useState(() => sessionStorage.getItem(cursorKey(meetingId)));

  // A meeting opened by its link before its first chunk arrived is refused (meeting_not_found): connect
  // again once the list shows it.
  const exists = summary !== undefined;
  const [attempt, setAttempt] = useState(0);
  const notFound = connection.status === "failed" && connection.code === "meeting_not_found";
  useEffect(() => {
    if (notFound && exists) setAttempt((n) => n + 1);
  }, [notFound, exists]);

  // One socket per open meeting: created here, stopped when the meeting closes (the key is its id).
  useEffect(() => {
    const connection = new EventConnection({
      url: (since) => eventsUrl(window.location.href, meetingId, token, since),
      onEvents: (events) => dispatch({ type: "events", events }),
      onState: setConnection,
    });
    connection.start();
    const online = () => connection.retryNow();
    window.addEventListener("online", online);
    return () => {
      window.removeEventListener("online", online);
      connection.stop();
    };
  }, [meetingId, token, attempt]);

  useEffect(() => {
    if (state.lastEventId) sessionStorage.setItem(cursorKey(meetingId), state.lastEventId);
  }, [meetingId, state.lastEventId]);

  useEffect(() => {
    if (connection.status === "failed" && connection.code !== "meeting_not_found") {
      report(`Events of ${meetingId}: ${connection.message} (${connection.code})`);
    }
  }, [connection, meetingId, report]);

  const segments = useMemo(() => transcript(state), [state]);
  const heard = segmentAt(segments, position);
  const phase = state.phase ?? summary?.phase ?? null;
  const finished = phase === "completed" || phase === "failed";
  const recording = state.recording;

  const save = useCallback(
    (format: "txt" | "vtt" | "srt") =>
      download(`${meetingPath(meetingId)}/transcript?format=${format}`, token, `${meetingId}.${format}`).catch((err) =>
        report(`Download of the ${format} transcript failed: ${err.message}`),
      ),
    [meetingId, token, report],
  );

  return (
    <article className="meeting" data-meeting={meetingId}>
      <header className="meeting-head">
        <h2>{meetingId}</h2>
        {phase && <span className={`phase phase-${phase}`}>{phase}</span>}
        <ConnectionBadge connection={connection} applied={state.applied} previous={previousCursor} />
        <span className="muted">
          {clock(recording.duration_s)} recorded · {bytes(recording.bytes)}
        </span>
        <span className="downloads">
          <a
            className={recording.bytes > 0 ? "button" : "button disabled"}
            href={recording.bytes > 0 ? audioUrl(meetingId, "recording", token) : undefined}
            download={`${meetingId}.wav`}
          >
            recording.wav
          </a>
          {(["txt", "vtt", "srt"] as const).map((f) => (
            <button key={f} type="button" onClick={() => save(f)} disabled={segments.length === 0}>
              {f}
            </button>
          ))}
        </span>
      </header>
      {summary?.failed_reason && <p className="inline-error">Meeting failed: {summary.failed_reason}</p>}
      <Player
        ref={player}
        meetingId={meetingId}
        token={token}
        format={summary?.format ?? null}
        recordingBytes={recording.bytes}
        recordingDuration={recording.duration_s}
        finished={finished}
        onPosition={setPosition}
      />
      <div className="columns">
        <TranscriptPanel
          segments={segments}
          heard={heard?.seq ?? null}
          follow={follow}
          onFollow={setFollow}
          onSeek={(t) => player.current?.seek(t)}
        />
        <div className="side">
          <ChunkGrid state={state} />
          <LogPanel state={state} />
        </div>
      </div>
    </article>
  );
}

function ConnectionBadge({
  connection,
  applied,
  previous,
}: {
  connection: ConnectionState;
  applied: number;
  previous: string | null;
}) {
  const [label, cls, title] = (() => {
    switch (connection.status) {
      case "open":
        return ["events: connected", "ok", connection.since ? `resumed after ${connection.since}` : "replayed from the start"];
      case "connecting":
        return [
          connection.attempt > 1 ? `events: connecting (attempt ${connection.attempt})` : "events: connecting",
          "warn",
          connection.since ? `resuming after ${connection.since}` : "replaying from the start",
        ];
      case "waiting":
        return [`events: reconnecting in ${(connection.retryInMs / 1000).toFixed(1)} s`, "warn", connection.reason];
      case "failed":
        return connection.code === "meeting_not_found"
          ? ["no such meeting (yet)", "warn", `${connection.message}; connects when it appears in the list`]
          : [`events: ${connection.code}`, "bad", connection.message];
      case "closed":
        return ["events: closed", "warn", ""];
    }
  })();
  const detail = `${title}${title ? " · " : ""}${applied} events${previous ? ` · last page load reached ${previous}` : ""}`;
  return (
    <span className={`connection ${cls}`} data-connection={connection.status} title={detail}>
      {label}
    </span>
  );
}
