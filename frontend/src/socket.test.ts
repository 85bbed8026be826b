import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeSocket } from "./fakeSocket.test-double";
import { eventsUrl } from "./api";
import { backoffMs, closeDecision, EventConnection, type ConnectionState } from "./socket";
import type { ServerEvent } from "./types";

const live = () => FakeSocket.all.filter((s) => s.readyState !== FakeSocket.CLOSED);
const event = (id: string): ServerEvent => ({
  id,
  meeting_id: "m1",
  type: "log",
  ts: 0,
  data: { level: "info", component: "api", message: id, seq: null },
});

function connect(since: string | null = null) {
  const delivered: ServerEvent[] = [];
  const states: ConnectionState[] = [];
  const connection = new EventConnection({
    url: (s) => eventsUrl("http://host:8080/", "m1", "tok", s),
    onEvents: (events) => delivered.push(...events),
    onState: (s) => states.push(s),
    since,
    WebSocketImpl: FakeSocket as unknown as typeof WebSocket,
  });
  connection.start();
  return { connection, delivered, states, last: () => FakeSocket.all.at(-1)! };
}

beforeEach(() => {
  FakeSocket.all = [];
  vi.useFakeTimers();
});
afterEach(() => vi.useRealTimers());

describe("close codes", () => {
  it("gives up on auth and unknown meeting, replays on a bad cursor, reconnects otherwise", () => {
    expect(closeDecision(4401)).toBe("fatal");
    expect(closeDecision(4404)).toBe("fatal");
    expect(closeDecision(4400)).toBe("replay");
    expect(closeDecision(1011)).toBe("reconnect");
    expect(closeDecision(1006)).toBe("reconnect");
    expect(closeDecision(1001)).toBe("reconnect");
  });

  it("backs off from 0.5 s to at most 8 s", () => {
    expect([1, 2, 3, 4, 5, 6, 10].map(backoffMs)).toEqual([500, 1000, 2000, 4000, 8000, 8000, 8000]);
  });
});

describe("EventConnection", () => {
  it("replays everything on first connect: no since in the URL, the token in the query", () => {
    const { last } = connect();
    const url = new URL(last().url);
    expect(url.protocol).toBe("ws:");
    expect(url.pathname).toBe("/v1/meetings/m1/events");
    expect(url.searchParams.get("token")).toBe("tok");
    expect(url.searchParams.has("since")).toBe(false);
  });

  it("resumes with since = the last event id after a drop, with exactly one socket at a time", () => {
    const { delivered, last, states } = connect();
    last().open();
    last().text(event("10-0"));
    last().text(event("11-0"));
    last().drop(1011, "event source unavailable; reconnect with since");
    expect(delivered.map((e) => e.id)).toEqual(["10-0", "11-0"]); // flushed before reconnecting
    expect(states.at(-1)).toMatchObject({ status: "waiting", retryInMs: 500 });
    expect(FakeSocket.all).toHaveLength(1);
    vi.advanceTimersByTime(500);
    expect(FakeSocket.all).toHaveLength(2);
    expect(new URL(last().url).searchParams.get("since")).toBe("11-0");
    expect(live()).toHaveLength(1);
  });

  it("batches events and keeps the highest id as the cursor", () => {
    const { connection, delivered, last } = connect();
    last().open();
    for (const id of ["1-0", "2-0", "3-0"]) last().text(event(id));
    expect(delivered).toHaveLength(0);
    vi.advanceTimersByTime(50);
    expect(delivered).toHaveLength(3);
    expect(connection.since).toBe("3-0");
  });

  it("starts from a given cursor", () => {
    const { last } = connect("7-3");
    expect(new URL(last().url).searchParams.get("since")).toBe("7-3");
  });

  it("reports the server's error and stops on 4401", () => {
    const { last, states } = connect();
    last().open();
    last().text({ error: { code: "invalid_token", message: "invalid bearer token" } });
    last().drop(4401, "invalid_token");
    expect(states.at(-1)).toEqual({ status: "failed", code: "invalid_token", message: "invalid bearer token" });
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("drops the cursor and replays from the start when the server refuses it (4400)", () => {
    const { last } = connect("bogus");
    last().drop(4400);
    vi.advanceTimersByTime(1000);
    expect(new URL(last().url).searchParams.has("since")).toBe(false);
  });

  it("backs off while the server stays away, and resets once connected", () => {
    const { last, states } = connect();
    last().drop(1006);
    vi.advanceTimersByTime(500);
    last().drop(1006);
    expect(states.at(-1)).toMatchObject({ status: "waiting", retryInMs: 1000 });
    vi.advanceTimersByTime(1000);
    last().open();
    last().drop(1006);
    expect(states.at(-1)).toMatchObject({ status: "waiting", retryInMs: 500 });
  });

  it("stop closes the socket, delivers nothing more and never reconnects", () => {
    const { connection, delivered, last } = connect();
    last().open();
    last().text(event("1-0"));
    connection.stop();
    expect(last().closedWith).toBe(1000);
    vi.advanceTimersByTime(60_000);
    expect(delivered).toHaveLength(0);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("stop before the socket opens closes it as soon as it opens", () => {
    const { connection, last } = connect();
    connection.stop();
    expect(last().closedWith).toBeNull();
    last().open();
    expect(last().closedWith).toBe(1000);
  });

  it("retryNow skips the wait but never opens a second socket", () => {
    const { connection, last } = connect();
    connection.retryNow(); // connected or connecting: nothing to do
    expect(FakeSocket.all).toHaveLength(1);
    last().drop(1006);
    connection.retryNow();
    expect(FakeSocket.all).toHaveLength(2);
    vi.advanceTimersByTime(10_000);
    expect(FakeSocket.all).toHaveLength(2);
  });
});
