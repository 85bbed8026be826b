import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeSocket } from "./fakeSocket.test-double";
import { liveAudioUrl } from "./api";
import { LiveAudioConnection, liveCloseDecision, type LiveAudioState, type LiveFrom } from "./liveAudio";

const FORMAT = { sample_rate: 16000, channels: 1, bits: 16 };
const start = (offset: number, edge: number) => ({ type: "start", format: FORMAT, offset, edge });

function listen(first: LiveFrom = { live: true, backMs: 1000 }) {
  const pcm: { offset: number; bytes: number[] }[] = [];
  const starts: number[][] = [];
  const states: LiveAudioState[] = [];
  const connection = new LiveAudioConnection(
    {
      url: (from) => liveAudioUrl("http://host:8080/", "m1", "tok", from),
      onStart: (_format, offset, edge) => starts.push([offset, edge]),
      onPcm: (offset, bytes) => pcm.push({ offset, bytes: [...bytes] }),
      onState: (s) => states.push(s),
      WebSocketImpl: FakeSocket as unknown as typeof WebSocket,
    },
    first,
  );
  connection.start();
  return { connection, pcm, starts, states, last: () => FakeSocket.all.at(-1)! };
}

const query = (socket: FakeSocket) => Object.fromEntries(new URL(socket.url).searchParams);

beforeEach(() => {
  FakeSocket.all = [];
  vi.useFakeTimers();
});
afterEach(() => vi.useRealTimers());

describe("liveAudioUrl", () => {
  it("asks for the live edge with a lead-in, or for a byte offset", () => {
    expect(liveAudioUrl("https://h/x", "m 1", "t", { live: true, backMs: 1000 })).toBe(
      "wss://h/v1/meetings/m%201/live-audio?token=t&from=live&back_ms=1000",
    );
    expect(liveAudioUrl("http://h/", "m1", "t", { live: true, backMs: 0 })).toBe("ws://h/v1/meetings/m1/live-audio?token=t&from=live");
    expect(liveAudioUrl("http://h/", "m1", "t", { offset: 64000 })).toBe("ws://h/v1/meetings/m1/live-audio?token=t&from=64000");
  });
});

describe("LiveAudioConnection", () => {
  it("hands over the PCM and resumes a dropped socket from the end of what it received", () => {
    const { pcm, starts, states, last } = listen();
    expect(query(last())).toMatchObject({ from: "live", back_ms: "1000" });
    expect(last().binaryType).toBe("arraybuffer");
    last().open();
    last().text(start(100, 120));
    last().pcm(100, [1, 2, 3, 4]);
    last().pcm(104, [5, 6]);
    last().drop(1006);
    expect(states.at(-1)).toMatchObject({ status: "waiting" });
    vi.runOnlyPendingTimers();
    expect(query(last())).toEqual({ token: "tok", from: "106" });
    last().open();
    last().text(start(106, 130));
    last().pcm(106, [7, 8]);
    expect(starts).toEqual([
      [100, 120],
      [106, 130],
    ]);
    expect(pcm).toEqual([
      { offset: 100, bytes: [1, 2, 3, 4] },
      { offset: 104, bytes: [5, 6] },
      { offset: 106, bytes: [7, 8] },
    ]);
  });

  it("drops bytes it already has and keeps the new ones (no repeat)", () => {
    const { pcm, last } = listen({ offset: 0 });
    last().open();
    last().text(start(0, 0));
    last().pcm(0, [1, 2, 3, 4]);
    last().pcm(2, [3, 4, 5, 6]);
    last().pcm(0, [1, 2]);
    expect(pcm).toEqual([
      { offset: 0, bytes: [1, 2, 3, 4] },
      { offset: 4, bytes: [5, 6] },
    ]);
  });

  it("never plays across a hole: it closes and asks again from where it stopped", () => {
    const { pcm, connection, last } = listen({ offset: 0 });
    last().open();
    last().text(start(0, 0));
    last().pcm(0, [1, 2]);
    last().pcm(6, [7, 8]);
    expect(last().closedWith).toBe(1000);
    last().pcm(8, [9, 9]); // still arriving while it closes: ignored
    last().drop(1000);
    vi.runOnlyPendingTimers();
    expect(query(last()).from).toBe("2");
    expect(pcm).toEqual([{ offset: 0, bytes: [1, 2] }]);
    expect(connection.received).toBe(2);
  });

  it("ends quietly when the meeting is over, and gives up on a refusal retrying cannot fix", () => {
    const ended = listen();
    ended.last().open();
    ended.last().text({ type: "end", reason: "completed" });
    ended.last().drop(1000, "completed");
    expect(ended.states.at(-1)).toEqual({ status: "ended", reason: "completed" });
    vi.runOnlyPendingTimers();
    expect(FakeSocket.all).toHaveLength(1);

    const refused = listen();
    refused.last().open();
    refused.last().text({ error: { code: "invalid_token", message: "invalid bearer token" } });
    refused.last().drop(4401, "invalid_token");
    expect(refused.states.at(-1)).toEqual({ status: "failed", code: "invalid_token", message: "invalid bearer token" });
  });

  it("retries a full gateway and a recording not there yet", () => {
    expect(liveCloseDecision(4429, "too_many_listeners")).toBe("reconnect");
    expect(liveCloseDecision(4404, "no_recording_yet")).toBe("reconnect");
    expect(liveCloseDecision(1011, "recording_unreadable")).toBe("reconnect");
    expect(liveCloseDecision(1006, null)).toBe("reconnect");
    expect(liveCloseDecision(4404, "meeting_deleted")).toBe("fatal");
    expect(liveCloseDecision(4416, "offset_beyond_edge")).toBe("fatal");
    expect(liveCloseDecision(4400, "invalid_from")).toBe("fatal");
  });

  it("stop closes the socket and delivers nothing more", () => {
    const { connection, pcm, last } = listen();
    last().open();
    last().text(start(0, 0));
    connection.stop();
    expect(last().closedWith).toBe(1000);
    last().pcm(0, [1, 2]);
    expect(pcm).toEqual([]);
  });
});
