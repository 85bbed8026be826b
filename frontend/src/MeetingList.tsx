import type { ApiError } from "./api";
import { openMeeting } from "./route";
import { clock } from "./format";
import type { MeetingPublic } from "./types";

interface Props {
  meetings: MeetingPublic[] | null;
  error: ApiError | null;
  selected: string | null;
}

export function MeetingList({ meetings, error, selected }: Props) {
  return (
    <section className="meetings">
      <h2>Meetings</h2>
      {error && <p className="inline-error">Cannot refresh the list: {error.message}</p>}
      {meetings === null && !error && <p className="muted">Loading…</p>}
      {meetings?.length === 0 && <p className="muted">No meetings yet. Send chunks, or run `audioflow up --demo`.</p>}
      <ul>
        {meetings?.map((m) => {
          const received = Math.max(m.chunks_received, 1);
          return (
            <li key={m.id} className={m.id === selected ? "selected" : undefined}>
              <button type="button" className="meeting-row" data-meeting={m.id} onClick={() => openMeeting(m.id)}>
                <span className="meeting-id">{m.id}</span>
                <span className={`phase phase-${m.phase}`}>{m.phase}</span>
                <span className="progress" title="transcribed / in the recording, of the chunks received">
                  <span className="bar transcribed" style={{ width: `${(100 * m.chunks_transcribed) / received}%` }} />
                  <span className="bar recorded" style={{ width: `${(100 * m.chunks_concatenated) / received}%` }} />
                </span>
                <span className="meeting-stats muted">
                  {m.chunks_transcribed}/{m.chunks_received} transcribed · {clock(m.recording_duration_s)}
                  {m.gaps.length > 0 && ` · ${m.gaps.length} gap${m.gaps.length > 1 ? "s" : ""}`}
                  {m.chunks_failed > 0 && ` · ${m.chunks_failed} failed`}
                </span>
              </button>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
