// The audio player. Live: `live.wav`, a chunked WAV of unknown length that follows the recording as it
// grows (Chromium plays it continuously; a Range-served file would stop at the length it had when loaded).
// Replay: `recording.wav`, served with Range so it seeks; its length is fixed when it loads, so reaching
// its end reloads it at the same position if the recording has grown since, or goes live. Positions are
// on the meeting's timeline: a live stream from the edge starts at the recording's length when opened.

import { forwardRef, useCallback, useEffect, useImperativeHandle, useRef, useState } from "react";
import { audioUrl } from "./api";
import { clock } from "./format";

export interface PlayerHandle {
  seek: (seconds: number) => void;
  goLive: () => void;
}

interface Props {
  meetingId: string;
  token: string;
  recordingBytes: number;
  recordingDuration: number;
  finished: boolean; // completed or failed: the recording will not grow
  onPosition: (seconds: number) => void;
}

interface Source {
  mode: "live" | "replay";
  src: string;
  offset: number; // meeting time at the source's time 0
  seekTo: number | null;
  autoplay: boolean;
  startedAt: number; // performance.now() when chosen
}

/** A meeting whose recording is shorter than this when the page opens it is played from its start. */
export const FROM_START_BELOW_S = 30;
const STALL_MS = 5000;
const RETRY_MS = 3000;

const MEDIA_ERRORS: Record<number, string> = {
  1: "aborted",
  2: "network error",
  3: "decoding error",
  4: "the audio could not be loaded",
};

let nonce = 0; // makes every source URL new, so the element really reloads

export const Player = forwardRef<PlayerHandle, Props>(function Player(props, ref) {
  const { meetingId, token, recordingBytes, recordingDuration, finished, onPosition } = props;
  const audio = useRef<HTMLAudioElement>(null);
  const [source, setSource] = useState<Source | null>(null);
  const [position, setPosition] = useState(0);
  const [blocked, setBlocked] = useState(false); // the browser wants a click before playing sound
  const [problem, setProblem] = useState<string | null>(null);
  const latest = useRef({ recordingDuration, finished, position: 0 });
  latest.current.recordingDuration = recordingDuration;
  latest.current.finished = finished;

  const live = useCallback(
    (fromStart = false): Source => ({
      mode: "live",
      src: audioUrl(meetingId, "live", token, { ...(fromStart ? { from: "start" } : {}), n: String(++nonce) }),
      offset: fromStart ? 0 : latest.current.recordingDuration,
      seekTo: null,
      autoplay: true,
      startedAt: performance.now(),
    }),
    [meetingId, token],
  );
  const replay = useCallback(
    (at: number, autoplay: boolean): Source => ({
      mode: "replay",
      src: audioUrl(meetingId, "recording", token, { n: String(++nonce) }),
      offset: 0,
      seekTo: at,
      autoplay,
      startedAt: performance.now(),
    }),
    [meetingId, token],
  );
  /** Carry on from `at`: from the recording if it holds more, else live. */
  const resume = useCallback(
    (at: number) => (latest.current.recordingDuration > at + 0.25 ? replay(at, true) : live()),
    [replay, live],
  );

  // Start once there is a recording. A meeting that is over: the whole recording, paused. A running one:
  // live, from its start while it is young (nothing missed, following it as it grows), else from the edge.
  useEffect(() => {
    if (source !== null || recordingBytes <= 0) return;
    setSource(finished ? replay(0, false) : live(recordingDuration < FROM_START_BELOW_S));
  }, [source, recordingBytes, recordingDuration, finished, live, replay]);

  const play = useCallback(() => {
    audio.current?.play().then(
      () => setBlocked(false),
      (err: DOMException) => {
        if (err.name === "NotAllowedError") setBlocked(true);
        // AbortError: the source changed; NotSupportedError: the error event reports it
        else if (err.name !== "AbortError" && err.name !== "NotSupportedError") setProblem(`audio: ${err.message}`);
      },
    );
  }, []);

  useEffect(() => {
    if (source?.autoplay) play();
  }, [source, play]);

  /** Replace `current` after `ms`, unless something else replaced it first. */
  const later = useCallback((current: Source | null, ms: number, next: () => Source) => {
    setTimeout(() => setSource((s) => (s === current ? next() : s)), ms);
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
          setSource(replay(target, true));
        }
      },
      goLive() {
        setSource(live());
      },
    }),
    [source, live, replay, play],
  );

  // A live stream cut off (gateway restarted, network drop) may neither end nor fail in Chromium: it just
  // stops. If the recording holds audio past the position and playback has not moved for a while, pick
  // it up again from there. Not before playback has started: Chromium buffers ~200 KB of a stream of
  // unknown length before it plays (about 6 s of 16 kHz mono), which is not a stall.
  useEffect(() => {
    if (source?.mode !== "live") return;
    let last = 0;
    let movedAt = performance.now();
    const timer = setInterval(() => {
      const element = audio.current;
      if (!element || element.paused || element.currentTime === 0) return;
      if (element.currentTime !== last) {
        last = element.currentTime;
        movedAt = performance.now();
      } else if (performance.now() - movedAt > STALL_MS) {
        const at = source.offset + element.currentTime;
        if (latest.current.recordingDuration > at + 1) setSource((s) => (s === source ? replay(at, true) : s));
      }
    }, 1000);
    return () => clearInterval(timer);
  }, [source, replay]);

  const onLoadedMetadata = () => {
    const element = audio.current;
    if (element && source?.seekTo != null) {
      element.currentTime = Number.isFinite(element.duration) ? Math.min(source.seekTo, element.duration) : source.seekTo;
    }
  };

  const onTimeUpdate = () => {
    const t = (source?.offset ?? 0) + (audio.current?.currentTime ?? 0);
    latest.current.position = t;
    setPosition(t);
    onPosition(t);
  };

  const onEnded = () => {
    const at = latest.current.position;
    const { recordingDuration: duration, finished: done } = latest.current;
    if (source?.mode === "replay") {
      // Its length was fixed when it loaded: reload it here if the recording has grown, else go live.
      if (duration > at + 0.25) setSource(replay(at, true));
      else if (!done) setSource(live());
    } else if (done) {
      setSource(replay(at, false)); // the meeting is over: the whole recording, paused where it ended
    } else {
      // The live stream dropped: carry on from here (not in a tight loop if it keeps ending at once).
      later(source, performance.now() - (source?.startedAt ?? 0) < 2000 ? 2000 : 0, () => resume(at));
    }
  };

  const onMediaError = () => {
    const error = audio.current?.error;
    if (!error || !source) return;
    const what = error.message || MEDIA_ERRORS[error.code] || `error ${error.code}`;
    const at = source.seekTo ?? latest.current.position;
    if (latest.current.finished) {
      setProblem(`audio (${source.mode}): ${what}`);
    } else {
      setProblem(`audio (${source.mode}): ${what}; trying again in ${RETRY_MS / 1000} s`);
      later(source, RETRY_MS, () => resume(at));
    }
  };

  if (recordingBytes <= 0 && source === null) {
    return <div className="player muted">Waiting for the first chunk to reach the recording…</div>;
  }
  const isLive = source?.mode === "live";
  return (
    <div className="player" data-mode={source?.mode ?? "none"} data-recording-duration={recordingDuration}>
      <audio
        ref={audio}
        src={source?.src}
        controls
        preload="auto"
        onLoadedMetadata={onLoadedMetadata}
        onTimeUpdate={onTimeUpdate}
        onPlaying={() => setProblem(null)}
        onEnded={onEnded}
        onError={onMediaError}
      />
      <div className="player-bar">
        <span className={isLive ? "mode live" : "mode"}>{isLive ? "● LIVE" : "replay"}</span>
        <span className="position">
          {clock(position)} / {clock(recordingDuration)}
        </span>
        <button type="button" onClick={() => setSource(live())} disabled={finished} title="Listen from the live edge">
          Go live
        </button>
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
