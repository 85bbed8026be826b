import { describe, expect, it } from "vitest";
import {
  applyEvent,
  chunkRows,
  chunkStarts,
  compareIds,
  EMPTY_CHUNK,
  filterLogs,
  initialState,
  LOG_LIMIT,
  logComponents,
  reducer,
  segmentAt,
  transcript,
  type MeetingState,
} from "./state";
import timelineCases from "./timeline.cases.json";
import type { ServerEvent } from "./types";

const M = "m1";
let clock = 1_700_000_000_000;

function ev<T extends ServerEvent["type"]>(
  type: T,
  data: Extract<ServerEvent, { type: T }>["data"],
  id = `${++clock}-0`,
  meeting_id = M,
): ServerEvent {
  return { id, meeting_id, type, ts: clock / 1000, data } as ServerEvent;
}

const received = (seq: number, duration_s = 2, id?: string) => ev("chunk.received", { seq, bytes: 64044, duration_s }, id);
const transcribed = (seq: number, text = `words of ${seq}`, id?: string) =>
  ev("chunk.transcribed", { seq, text, words: [{ text: "w", start_s: 0.5, end_s: 0.9 }], duration_s: 2, start_s: 0 }, id);
const extended = (through: number, duration_s: number, appended: number[], gaps: number[] = []) =>
  ev("recording.extended", { concatenated_through: through, duration_s, bytes: 44 + duration_s * 32000, appended, gaps });
const log = (message: string, component = "processing", seq: number | null = null) =>
  ev("log", { level: "info", component, message, seq });

function run(events: ServerEvent[], state: MeetingState = initialState(M)): MeetingState {
  return reducer(state, { type: "events", events });
}

describe("event ids", () => {
  it("orders by milliseconds, then by sequence, numerically", () => {
    expect(compareIds("1700000000000-0", "1700000000000-1")).toBeLessThan(0);
    expect(compareIds("1700000000000-10", "1700000000000-9")).toBeGreaterThan(0);
    expect(compareIds("999-5", "1000-0")).toBeLessThan(0); // not string order
    expect(compareIds("1000-0", "1000-0")).toBe(0);
  });
});

describe("dedupe and ordering", () => {
  it("applies an event once, even when a replay delivers it again", () => {
    const events = [received(0), transcribed(0), log("hello")];
    const once = run(events);
    const twice = run(events, once);
    expect(twice).toBe(once); // the very same object: nothing changed
    expect(once.applied).toBe(3);
    expect(once.logs).toHaveLength(1);
  });

  it("drops an overlapping resume: only events after the cursor count", () => {
    const a = received(0);
    const b = received(1);
    const c = transcribed(1);
    const first = run([a, b]);
    const resumed = run([b, c], first); // the server resent b
    expect(resumed.applied).toBe(3);
    expect(resumed.lastEventId).toBe(c.id);
  });

  it("ignores an event older than the cursor (never goes back in time)", () => {
    const late = received(5, 2, "1000-0");
    const state = run([received(0)]);
    expect(applyEvent(state, late)).toBe(state);
  });

  it("ignores another meeting's events", () => {
    const state = initialState(M);
    const other = { ...received(0), meeting_id: "m2" } as ServerEvent;
    expect(applyEvent(state, other)).toBe(state);
  });

  it("lists the transcript in seq order whatever the arrival order, seq 0 included", () => {
    const state = run([received(2), transcribed(2), received(0), received(1), transcribed(0), transcribed(1)]);
    expect(transcript(state).map((s) => s.seq)).toEqual([0, 1, 2]);
    expect(transcript(state)[0].text).toBe("words of 0");
  });

  it("replaying the whole stream into a fresh state rebuilds the same state", () => {
    const events = [received(1), received(0), transcribed(1), extended(1, 4, [0, 1]), transcribed(0), log("x")];
    const live = events.reduce((s, e) => run([e], s), initialState(M));
    expect(run(events)).toEqual(live);
  });

  it("skips event types it does not know", () => {
    const state = initialState(M);
    const odd = { id: "5-0", meeting_id: M, type: "something.new", ts: 0, data: {} } as unknown as ServerEvent;
    expect(applyEvent(state, odd)).toBe(state);
  });
});

describe("timeline", () => {
  it("puts each segment after the audio of every earlier seq, and moves it when a missing one arrives", () => {
    let state = run([received(0, 2), transcribed(0), received(2, 3), transcribed(2)]);
    expect(transcript(state).map((s) => s.start_s)).toEqual([0, 2]); // seq 1 unknown: adds nothing yet
    state = run([received(1, 1.5)], state);
    expect(transcript(state).map((s) => [s.start_s, s.end_s])).toEqual([
      [0, 2],
      [3.5, 5.5],
    ]);
    expect(transcript(state)[1].words[0]).toEqual({ text: "w", start_s: 4, end_s: 4.4 });
  });

  it("counts the silence that bridged a gap", () => {
    const state = run([
      received(0, 2),
      extended(0, 2, [0]),
      received(2, 2),
      transcribed(2),
      extended(2, 6.5, [1, 2], [1]), // 4.5 s more: 2 s of seq 2, so 2.5 s of silence for seq 1
    ]);
    expect(state.gapSeconds[1]).toBeCloseTo(2.5);
    expect(chunkStarts(state).get(2)).toBeCloseTo(4.5);
    expect(transcript(state)[0].start_s).toBeCloseTo(4.5);
  });

  it("finds the segment being heard", () => {
    const segments = transcript(run([received(0), received(1), transcribed(0), transcribed(1)]));
    expect(segmentAt(segments, 0)?.seq).toBe(0);
    expect(segmentAt(segments, 2.1)?.seq).toBe(1);
    expect(segmentAt(segments, 4)).toBeNull();
  });
});

describe("timeline cases shared with the server", () => {
  // The same cases as tests/unit/core/test_timeline.py runs on queries.meeting_timeline.
  it.each(timelineCases.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const state = initialState(M);
    for (const [seq, duration_s] of c.durations) state.chunks[seq] = { ...EMPTY_CHUNK, received: true, duration_s };
    for (const [seq, seconds] of c.gaps) {
      state.chunks[seq] = { ...(state.chunks[seq] ?? EMPTY_CHUNK), gap: true };
      state.gapSeconds[seq] = seconds;
    }
    const starts = Object.fromEntries(chunkStarts(state));
    expect(Object.keys(starts).sort()).toEqual(Object.keys(c.expected).sort());
    for (const [seq, start] of Object.entries(c.expected)) expect(starts[Number(seq)]).toBeCloseTo(start, 9);
  });
});

describe("chunk status", () => {
  it("shows received, transcribed, in the recording, missing and gaps", () => {
    const state = run([
      received(0),
      transcribed(0),
      extended(0, 2, [0]),
      received(1),
      extended(1, 4, [1]),
      received(3),
      transcribed(3),
      received(5),
      extended(4, 10, [2, 3, 4], [2, 4]),
    ]);
    const status = Object.fromEntries(chunkRows(state).map((r) => [r.seq, r.status]));
    expect(status).toEqual({ 0: "done", 1: "recorded", 2: "gap", 3: "done", 4: "gap", 5: "received" });
  });

  it("shows a seq that has not arrived as missing, up to the highest seen", () => {
    const rows = chunkRows(run([received(0), received(3), transcribed(3)]));
    expect(rows.map((r) => r.status)).toEqual(["received", "missing", "missing", "transcribed"]);
  });

  it("marks a failed chunk, and clears it when a retry transcribes it", () => {
    let state = run([received(0), ev("chunk.failed", { seq: 0, stage: "transcribe", reason: "boom" })]);
    expect(chunkRows(state)[0].status).toBe("failed");
    expect(state.failures[0]).toMatchObject({ seq: 0, stage: "transcribe", reason: "boom" });
    state = run([transcribed(0)], state);
    expect(chunkRows(state)[0].status).toBe("transcribed");
  });

  it("keeps a failure without a seq (the recording's) in the list only", () => {
    const state = run([ev("chunk.failed", { stage: "concat", reason: "full" })]);
    expect(state.failures).toHaveLength(1);
    expect(chunkRows(state)).toEqual([]);
  });

  it("follows the meeting's phase", () => {
    const state = run([ev("meeting.phase", { phase: "live" }), ev("meeting.phase", { phase: "completed" })]);
    expect(state.phase).toBe("completed");
  });
});

describe("log", () => {
  it("keeps only the newest LOG_LIMIT lines", () => {
    const events = Array.from({ length: LOG_LIMIT + 37 }, (_, i) => log(`line ${i}`));
    const state = run(events);
    expect(state.logs).toHaveLength(LOG_LIMIT);
    expect(state.logs[0].message).toBe("line 37");
    expect(state.logs.at(-1)!.message).toBe(`line ${LOG_LIMIT + 36}`);
  });

  it("filters by component and lists the components", () => {
    const state = run([log("a", "processing", 1), log("b", "concat"), log("c", "processing")]);
    expect(logComponents(state)).toEqual(["concat", "processing"]);
    expect(filterLogs(state.logs, "processing").map((l) => l.message)).toEqual(["a", "c"]);
    expect(filterLogs(state.logs, null)).toHaveLength(3);
    expect(state.logs[0].seq).toBe(1);
  });
});

describe("reset", () => {
  it("starts over for a meeting", () => {
    const state = run([received(0)]);
    expect(reducer(state, { type: "reset", meetingId: "m2" })).toEqual(initialState("m2"));
  });
});
