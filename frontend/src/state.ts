// One meeting's state, rebuilt from its event stream by a pure reducer.
//
// Events come from one WebSocket, replayed from the start on page load and resumed with `since` after a
// drop. An event whose id is not after the last one applied is a replayed duplicate and changes nothing,
// so replays, overlaps and reconnects are all safe. Events of another meeting are ignored.

import type { LogData, Phase, ServerEvent, Word } from "./types";

export const LOG_LIMIT = 500;

export interface ChunkInfo {
  received: boolean;
  bytes: number;
  duration_s: number | null; // null until the chunk has been received
  transcribed: boolean;
  inRecording: boolean;
  gap: boolean; // never arrived in time: bridged with silence in the recording
  failed: string | null; // "stage: reason" of its last failure
}

export interface SegmentInfo {
  seq: number;
  text: string;
  words: Word[]; // relative to the chunk's start
  duration_s: number;
  hint_start_s: number; // the server's start when transcribed (provisional)
}

export interface LogLine extends LogData {
  id: string;
  ts: number;
}

export interface Failure {
  id: string;
  ts: number;
  seq: number | null;
  stage: string;
  reason: string;
}

export interface MeetingState {
  meetingId: string;
  lastEventId: string | null; // the resume cursor: `since` for the next connection
  applied: number; // events applied (duplicates excluded)
  phase: Phase | null;
  chunks: Record<number, ChunkInfo>;
  segments: Record<number, SegmentInfo>;
  recording: { concatenated_through: number; duration_s: number; bytes: number };
  gapSeconds: Record<number, number>; // length of the silence that bridged a gap
  logs: LogLine[]; // the newest LOG_LIMIT lines, oldest first
  failures: Failure[];
}

export type Action = { type: "events"; events: ServerEvent[] } | { type: "reset"; meetingId: string };

export function initialState(meetingId: string): MeetingState {
  return {
    meetingId,
    lastEventId: null,
    applied: 0,
    phase: null,
    chunks: {},
    segments: {},
    recording: { concatenated_through: -1, duration_s: 0, bytes: 0 },
    gapSeconds: {},
    logs: [],
    failures: [],
  };
}

/** Orders Redis stream ids ("<ms>-<n>"); negative, zero or positive like a comparator. */
export function compareIds(a: string, b: string): number {
  const [am, an = "0"] = a.split("-");
  const [bm, bn = "0"] = b.split("-");
  const byMs = Number(am) - Number(bm);
  return byMs !== 0 ? byMs : Number(an) - Number(bn);
}

export function reducer(state: MeetingState, action: Action): MeetingState {
  switch (action.type) {
    case "reset":
      return initialState(action.meetingId);
    case "events": {
      let next = state;
      for (const event of action.events) next = applyEvent(next, event);
      return next;
    }
  }
}

/** A seq nothing is known of yet (shared: never changed in place, always copied with a change). */
export const EMPTY_CHUNK: Readonly<ChunkInfo> = Object.freeze({
  received: false,
  bytes: 0,
  duration_s: null,
  transcribed: false,
  inRecording: false,
  gap: false,
  failed: null,
});

function chunk(state: MeetingState, seq: number): ChunkInfo {
  return state.chunks[seq] ?? EMPTY_CHUNK;
}

function withChunk(state: MeetingState, seq: number, change: Partial<ChunkInfo>): Record<number, ChunkInfo> {
  return { ...state.chunks, [seq]: { ...chunk(state, seq), ...change } };
}

/** Applies one event, or returns `state` itself when the event is a duplicate or another meeting's. */
export function applyEvent(state: MeetingState, event: ServerEvent): MeetingState {
  if (event.meeting_id !== state.meetingId) return state;
  if (state.lastEventId !== null && compareIds(event.id, state.lastEventId) <= 0) return state;
  const next: MeetingState = { ...state, lastEventId: event.id, applied: state.applied + 1 };
  switch (event.type) {
    case "chunk.received": {
      const { seq, bytes, duration_s } = event.data;
      next.chunks = withChunk(state, seq, { received: true, bytes, duration_s });
      break;
    }
    case "chunk.transcribed": {
      const { seq, text, words, duration_s, start_s } = event.data;
      next.chunks = withChunk(state, seq, { transcribed: true, failed: null });
      next.segments = { ...state.segments, [seq]: { seq, text, words, duration_s, hint_start_s: start_s } };
      break;
    }
    case "recording.extended": {
      const { concatenated_through, duration_s, bytes, appended, gaps } = event.data;
      const chunks = { ...state.chunks };
      for (const seq of appended) chunks[seq] = { ...chunk(state, seq), inRecording: true };
      for (const seq of gaps) chunks[seq] = { ...chunks[seq], gap: true };
      next.chunks = chunks;
      if (gaps.length > 0) next.gapSeconds = { ...state.gapSeconds, ...bridgedLengths(state, event.data) };
      next.recording = { concatenated_through, duration_s, bytes };
      break;
    }
    case "chunk.failed": {
      const { seq = null, stage, reason } = event.data;
      next.failures = [...state.failures, { id: event.id, ts: event.ts, seq: seq ?? null, stage, reason }];
      if (seq !== null && seq !== undefined) next.chunks = withChunk(state, seq, { failed: `${stage}: ${reason}` });
      break;
    }
    case "meeting.phase":
      next.phase = event.data.phase;
      break;
    case "log": {
      const line: LogLine = { ...event.data, seq: event.data.seq ?? null, id: event.id, ts: event.ts };
      const logs = state.logs.length >= LOG_LIMIT ? state.logs.slice(state.logs.length - LOG_LIMIT + 1) : state.logs.slice();
      logs.push(line);
      next.logs = logs;
      break;
    }
    default:
      return state; // a type this page does not know: skipped, but not an error
  }
  return next;
}

/** The silence that bridged each gap: the growth of the recording not explained by the chunks appended
 * with it (shared equally when one append bridged several gaps). */
function bridgedLengths(state: MeetingState, data: { duration_s: number; appended: number[]; gaps: number[] }) {
  const gapSet = new Set(data.gaps);
  let known = 0;
  for (const seq of data.appended) if (!gapSet.has(seq)) known += chunk(state, seq).duration_s ?? 0;
  const each = Math.max(0, data.duration_s - state.recording.duration_s - known) / data.gaps.length;
  return Object.fromEntries(data.gaps.map((seq) => [seq, each]));
}

// ---- derived views ----

/** Start (s) of every known seq on the meeting's timeline: all the audio of earlier seqs, chunks and
 * bridged gaps alike. A seq not yet received adds nothing, so later starts are provisional until it comes.
 *
 * It mirrors the server's one owner of this rule, `queries.meeting_timeline` / `queries.chunk_start`
 * (core/src/audioflow/core/db/queries.py): the page computes it itself because a late chunk or a bridged
 * gap moves every later start, and no event carries those moves. Both run the cases in
 * `timeline.cases.json`: tests/unit/core/test_timeline.py::test_chunk_starts on the server's, and
 * state.test.ts ("timeline cases shared with the server") on this one. */
export function chunkStarts(state: MeetingState): Map<number, number> {
  const lengths = new Map<number, number>();
  for (const [key, info] of Object.entries(state.chunks)) {
    const seq = Number(key);
    if (info.duration_s !== null) lengths.set(seq, info.duration_s);
    else if (info.gap) lengths.set(seq, state.gapSeconds[seq] ?? 0);
  }
  const starts = new Map<number, number>();
  let elapsed = 0;
  for (const seq of [...lengths.keys()].sort((a, b) => a - b)) {
    starts.set(seq, elapsed);
    elapsed += lengths.get(seq)!;
  }
  return starts;
}

export interface TimedSegment {
  seq: number;
  start_s: number;
  end_s: number;
  text: string;
  words: Word[]; // on the meeting's timeline
}

/** The transcript in seq order with times on the meeting's timeline. */
export function transcript(state: MeetingState): TimedSegment[] {
  const starts = chunkStarts(state);
  return Object.values(state.segments)
    .sort((a, b) => a.seq - b.seq)
    .map((s) => {
      const start = starts.get(s.seq) ?? s.hint_start_s;
      return {
        seq: s.seq,
        start_s: start,
        end_s: start + s.duration_s,
        text: s.text,
        words: s.words.map((w) => ({ text: w.text, start_s: start + w.start_s, end_s: start + w.end_s })),
      };
    });
}

/** The segment being heard at `position` (s), if any. */
export function segmentAt(segments: TimedSegment[], position: number): TimedSegment | null {
  for (const s of segments) if (position >= s.start_s && position < s.end_s) return s;
  return null;
}

export type ChunkStatus = "missing" | "received" | "transcribed" | "recorded" | "done" | "gap" | "failed";

export interface ChunkRow {
  seq: number;
  status: ChunkStatus;
  info: ChunkInfo;
}

/** Every seq from 0 to the highest seen, so that a seq that never arrived shows as missing (or, once the
 * recording bridged it with silence, as a gap). */
export function chunkRows(state: MeetingState): ChunkRow[] {
  const seqs = Object.keys(state.chunks).map(Number);
  const highest = Math.max(-1, state.recording.concatenated_through, ...seqs);
  const rows: ChunkRow[] = [];
  for (let seq = 0; seq <= highest; seq++) {
    const info = chunk(state, seq);
    rows.push({ seq, status: chunkStatus(info), info });
  }
  return rows;
}

export function chunkStatus(info: ChunkInfo): ChunkStatus {
  if (info.failed && !info.transcribed) return "failed";
  if (info.gap) return "gap"; // silence in the recording, even if the chunk came later
  if (!info.received) return "missing";
  if (info.transcribed && info.inRecording) return "done";
  if (info.inRecording) return "recorded";
  if (info.transcribed) return "transcribed";
  return "received";
}

export function logComponents(state: MeetingState): string[] {
  return [...new Set(state.logs.map((l) => l.component))].sort();
}

export function filterLogs(logs: LogLine[], component: string | null): LogLine[] {
  return component ? logs.filter((l) => l.component === component) : logs;
}
