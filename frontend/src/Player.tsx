// The audio player. Live: the live-audio WebSocket into an AudioWorklet (see livePlayer.ts), from just
// before the recording's edge, so each chunk is heard as soon as it enters the recording. Replay:
// `recording.wav`, served with Range so it seeks; its length is fixed when it loads, so reaching its end
// reloads it at the same position if the recording has grown since, or goes live. Positions are on the
// meeting's timeline (seconds of recording). The badge says how far behind live the listener is.

import { forwardRef, useCallback, useEffect, useImperativeHandle, useRef, useState } from "react";
import { audioUrl, liveAudioUrl } from "./api";
import { clock } from "./format";
import type { LiveAudioState } from "./liveAudio";
import { LEAD_IN_MS, LivePlayer } from "./livePlayer";
import { byteRate, LiveClock, liveBadge } from "./pcm";
import type { AudioFormat } from "./types";

export interface PlayerHandle {
  seek: (seconds: number) => void;
  goLive: () => void;
}

interface Props {
  meetingId: string;
  token: string;
  format: AudioFormat | null;
  recordingBytes: number; // the WAV file's, header included
  recordingDuration: number;
  finished: boolean; // completed or failed: the recording will not grow
  onPosition: (seconds: number) => void;
}

type Source =
  | { mode: "live"; id: number }
  | { mode: "replay"; id: number; src: string; seekTo: number; autoplay: boolean };

const HEADER = 44;
const STATE_EVERY_MS = 100; // React updates of the position (the data attribute follows every report)
const RETRY_MS = 3000;

const MEDIA_ERRORS: Record<number, string> = {
  1: "aborted",
  2: "network error",
  3: "decoding error",
  4: "the audio could not be loaded",
};

let nonce = 0; // makes every source new, so a replay URL really reloads and a live player restarts

export const Player = forwardRef<PlayerHandle, Props>(function Player(props, ref) {
  const { meetingId, token, format, recordingBytes, recordingDuration, finished, onPosition } = props;
  const audio = useRef<HTMLAudioElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const [source, setSource] = useState<Source | null>(null);
  const [position, setPosition] = useState(0);
  const [blocked, setBlocked] = useState(false); // the browser wants a click before playing sound
  const [problem, setProblem] = useState<string | null>(null);
  const [liveState, setLiveState] = useState<LiveAudioState | null>(null);
  const [, setTick] = useState(0);
  const latest = useRef({ recordingDuration, finished, position: 0, shownAt: 0 });
  latest.current.recordingDuration = recordingDuration;
  latest.current.finished = finished;
  const live = useRef<LivePlayer | null>(null);

  // How far behind live: the format comes from the meeting list, or else from the live stream itself.
  const liveClock = useRef<LiveClock | null>(null);
  const clockFor = useCallback((f: AudioFormat) => (liveClock.current ??= new LiveClock(byteRate(f))), []);
  if (format) clockFor(format);
  useEffect(() => {
    if (recordingBytes > HEADER) liveClock.current?.seen(recordingBytes - HEADER, performance.now() / 1000);
  }, [recordingBytes, format]);

  /** Every position goes through here: the data attribute at once (tests read it), React less often. */
  const moved = useCallback(
    (seconds: number) => {
      latest.current.position = seconds;
      box.current?.setAttribute("data-position", seconds.toFixed(3));
      const now = performance.now();
      if (now - latest.current.shownAt >= STATE_EVERY_MS) {
        latest.current.shownAt = now;
        setPosition(seconds);
        onPosition(seconds);
      }
    },
    [onPosition],
  );

  const goLive = useCallback(() => setSource({ mode: "live", id: ++nonce }), []);
  const replaySource = useCallback(
    (at: number, autoplay: boolean): Source => {
      const id = ++nonce;
      return { mode: "replay", id, src: audioUrl(meetingId, "recording", token, { n: String(id) }), seekTo: at, autoplay };
    },
    [meetingId, token],
  );
  const replay = useCallback((at: number, autoplay: boolean) => setSource(replaySource(at, autoplay)), [replaySource]);

  // Start once there is a recording: a meeting that is over, its whole recording, paused; else live.
  useEffect(() => {
    if (source !== null || recordingBytes <= HEADER) return;
    if (finished) replay(0, false);
    else goLive();
  }, [source, recordingBytes, finished, replay, goLive]);

  // Live: one player per live source, stopped when the source changes.
  useEffect(() => {
    if (source?.mode !== "live") return;
    setProblem(null);
    const player = new LivePlayer({
      url: (from) => liveAudioUrl(window.location.href, meetingId, token, from),
      from: { live: true, backMs: LEAD_IN_MS },
      onFormat: clockFor,
      onHeard: moved,
      onEdge: (edge) => liveClock.current?.seen(edge, performance.now() / 1000),
      onState: (state) => {
        setLiveState(state);
        if (state.status === "failed") setProblem(`live audio: ${state.message} (${state.code})`);
      },
      onBlocked: setBlocked,
      // The meeting is over and all of it was heard: the whole recording, paused where it ended.
      onDrained: () => setSource((s) => (s === source ? replaySource(latest.current.position, false) : s)),
      onProblem: setProblem,
    });
    live.current = player;
    player.start();
    return () => {
      player.stop();
      live.current = null;
      setLiveState(null);
      setBlocked(false);
    };
  }, [source, meetingId, token, moved, clockFor, replaySource]);

  const play = useCallback(() => {
    if (source?.mode === "live") {
      live.current?.resume();
      return;
    }
    audio.current?.play().then(
      () => setBlocked(false),
      (err: DOMException) => {
        if (err.name === "NotAllowedError") setBlocked(true);
        // AbortError: the source changed; NotSupportedError: the error event reports it
        else if (err.name !== "AbortError" && err.name !== "NotSupportedError") setProblem(`audio: ${err.message}`);
      },
    );
  }, [source]);

  useEffect(() => {
    if (source?.mode === "replay" && source.autoplay) play();
  }, [source, play]);

  // The badge also moves while nothing is heard (paused, or the meeting grows past a replay).
  useEffect(() => {
    const timer = setInterval(() => setTick((n) => n + 1), 500);
    return () => clearInterval(timer);
  }, []);

  useImperativeHandle(
    ref,
    () => ({
      seek(seconds: number) {
        const element = audio.current;
        const target = Math.max(0, Math.min(seconds, latest.current.recordingDuration));
        if (element && source?.mode === "replay" && Number.isFinite(element.duration) && target < element.duration) {
          element.currentTime = target;
          play();
        } else {
          replay(target, true);
        }
      },
      goLive,
    }),
    [source, replay, goLive, play],
  );

  const onLoadedMetadata = () => {
    const element = audio.current;
    if (element && source?.mode === "replay") {
      element.currentTime = Number.isFinite(element.duration) ? Math.min(source.seekTo, element.duration) : source.seekTo;
    }
  };

  const onEnded = () => {
    const at = latest.current.position;
    const { recordingDuration: duration, finished: done } = latest.current;
    // Its length was fixed when it loaded: reload it here if the recording has grown, else go live.
    if (duration > at + 0.25) replay(at, true);
    else if (!done) goLive();
  };

  const onMediaError = () => {
    const error = audio.current?.error;
    if (!error || source?.mode !== "replay") return;
    const what = error.message || MEDIA_ERRORS[error.code] || `error ${error.code}`;
    const at = latest.current.position;
    if (latest.current.finished) {
      setProblem(`audio (replay): ${what}`);
    } else {
      setProblem(`audio (replay): ${what}; trying again in ${RETRY_MS / 1000} s`);
      const failed = source;
      setTimeout(() => setSource((s) => (s === failed ? { ...failed, id: ++nonce, seekTo: at, autoplay: true } : s)), RETRY_MS);
    }
  };

  if (recordingBytes <= HEADER && source === null) {
    return <div className="player muted">Waiting for the first chunk to reach the recording…</div>;
  }
  const isLive = source?.mode === "live";
  const edge = liveClock.current;
  const behind = edge && !finished ? edge.behind(position * edge.bytesPerSecond, performance.now() / 1000) : null;
  // A meeting that is over has no live edge: the live player only plays out its end.
  const badge = finished ? { live: false, text: isLive ? "meeting over" : "replay" } : liveBadge(behind);
  const connecting = isLive && liveState !== null && liveState.status !== "open" && liveState.status !== "ended";
  return (
    <div
      ref={box}
      className="player"
      data-mode={source?.mode ?? "none"}
      data-recording-duration={recordingDuration}
      data-behind={behind === null ? "" : behind.toFixed(3)}
    >
      {source?.mode === "replay" && (
        <audio
          key={source.id}
          ref={audio}
          src={source.src}
          controls
          preload="auto"
          onLoadedMetadata={onLoadedMetadata}
          onTimeUpdate={() => moved(audio.current?.currentTime ?? 0)}
          onPlaying={() => setProblem(null)}
          onEnded={onEnded}
          onError={onMediaError}
        />
      )}
      <div className="player-bar">
        <span className={badge.live ? "mode live" : "mode"} data-live={badge.live} title="how far behind the recording's live edge">
          {badge.text}
        </span>
        <span className="position">
          {clock(position)} / {clock(recordingDuration)}
        </span>
        {isLive && (
          <button type="button" onClick={() => replay(latest.current.position, false)} title="Pause (carry on later from here)">
            Pause
          </button>
        )}
        <button type="button" onClick={goLive} disabled={finished} title="Listen from the live edge">
          Go live
        </button>
        {connecting && liveState?.status === "waiting" && <span className="muted">reconnecting: {liveState.reason}</span>}
        {blocked && (
          <button type="button" className="primary" onClick={play}>
            ▶ Click to listen
          </button>
        )}
        {problem && (
          <span className="inline-error" role="alert">
            {problem}
          </span>
        )}
      </div>
    </div>
  );
});
