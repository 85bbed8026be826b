import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { clock, ranges, timeOfDay } from "./format";
import {
  chunkRows,
  filterLogs,
  LOG_LIMIT,
  logComponents,
  type ChunkStatus,
  type MeetingState,
  type TimedSegment,
} from "./state";

interface TranscriptProps {
  segments: TimedSegment[];
  heard: number | null;
  follow: boolean;
  onFollow: (follow: boolean) => void;
  onSeek: (seconds: number) => void;
}

export function TranscriptPanel({ segments, heard, follow, onFollow, onSeek }: TranscriptProps) {
  const list = useRef<HTMLOListElement>(null);
  useEffect(() => {
    if (!follow || heard === null) return;
    list.current?.querySelector(`[data-seq="${heard}"]`)?.scrollIntoView({ block: "nearest" });
  }, [heard, follow]);
  return (
    <section className="transcript">
      <header className="panel-head">
        <h3>Transcript</h3>
        <label className="muted">
          <input type="checkbox" checked={follow} onChange={(e) => onFollow(e.target.checked)} /> follow playback
        </label>
      </header>
      {segments.length === 0 && <p className="muted">The transcript appears here as chunks are transcribed.</p>}
      <ol ref={list}>
        {segments.map((s) => (
          <li
            key={s.seq}
            data-seq={s.seq}
            className={s.seq === heard ? "segment heard" : "segment"}
            onClick={() => onSeek(s.start_s)}
            title={`chunk ${s.seq}: ${clock(s.start_s)}–${clock(s.end_s)} · click to listen`}
          >
            <time>{clock(s.start_s)}</time>
            <span className="text">{s.text || <em className="muted">(no speech)</em>}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}

const STATUS_TEXT: Record<ChunkStatus, string> = {
  missing: "not received yet",
  received: "received",
  transcribed: "transcribed, not yet in the recording",
  recorded: "in the recording, not yet transcribed",
  done: "transcribed and in the recording",
  gap: "never arrived in time: silence in the recording",
  failed: "failed",
};

export function ChunkGrid({ state }: { state: MeetingState }) {
  const rows = chunkRows(state);
  const missing = rows.filter((r) => r.status === "missing").map((r) => r.seq);
  const gaps = rows.filter((r) => r.status === "gap").map((r) => r.seq);
  const count = (test: (r: (typeof rows)[number]) => boolean) => rows.filter(test).length;
  return (
    <section className="chunks">
      <h3>Chunks</h3>
      <p className="muted">
        {count((r) => r.info.received)} received · {count((r) => r.info.transcribed)} transcribed · recording through{" "}
        {state.recording.concatenated_through >= 0 ? `seq ${state.recording.concatenated_through}` : "—"}
      </p>
      <div className="grid">
        {rows.map((r) => (
          <span
            key={r.seq}
            className={`cell ${r.status}`}
            data-seq={r.seq}
            data-status={r.status}
            title={`seq ${r.seq}: ${STATUS_TEXT[r.status]}${r.info.failed ? ` (${r.info.failed})` : ""}`}
          >
            {r.seq}
          </span>
        ))}
      </div>
      <p className="legend muted">
        {(["received", "transcribed", "recorded", "done", "missing", "gap", "failed"] as const).map((s) => (
          <span key={s}>
            <span className={`cell mini ${s}`} /> {s === "done" ? "both" : s === "recorded" ? "in recording" : s}
          </span>
        ))}
      </p>
      {missing.length > 0 && <p className="warn-text">Waiting for seq {ranges(missing)}</p>}
      {gaps.length > 0 && <p className="warn-text">Gaps bridged with silence: seq {ranges(gaps)}</p>}
      {state.failures.length > 0 && (
        <ul className="failures">
          {state.failures.slice(-20).map((f) => (
            <li key={f.id}>
              {timeOfDay(f.ts)} {f.stage} {f.seq !== null ? `seq ${f.seq}` : ""}: {f.reason}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function LogPanel({ state }: { state: MeetingState }) {
  const [component, setComponent] = useState<string | null>(null);
  const box = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const lines = filterLogs(state.logs, component);
  useLayoutEffect(() => {
    if (atBottom.current && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines.length, component, state.lastEventId]);
  return (
    <section className="logs">
      <header className="panel-head">
        <h3>Log</h3>
        <select value={component ?? ""} onChange={(e) => setComponent(e.target.value || null)} aria-label="component">
          <option value="">all components</option>
          {logComponents(state).map((c) => (
            <option key={c} value={c}>
              {c}
            </option>
          ))}
        </select>
        <span className="muted">
          {lines.length} line{lines.length === 1 ? "" : "s"} (last {LOG_LIMIT} kept)
        </span>
      </header>
      <div
        className="log-lines"
        ref={box}
        onScroll={(e) => {
          const el = e.currentTarget;
          atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 8;
        }}
      >
        {lines.map((l) => (
          <div key={l.id} className={`log-line level-${l.level}`}>
            <time>{timeOfDay(l.ts)}</time> <span className="level">{l.level}</span>{" "}
            <span className="component">{l.component}</span>
            {l.seq !== null && <span className="seq"> #{l.seq}</span>} {l.message}
          </div>
        ))}
      </div>
    </section>
  );
}
