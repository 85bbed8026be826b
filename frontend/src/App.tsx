import { useEffect, useState } from "react";
import { ApiError, listMeetings, saveToken, takeToken } from "./api";
import { ErrorList, ErrorProvider } from "./errors";
import { MeetingList } from "./MeetingList";
import { MeetingView } from "./MeetingView";
import { meetingFromHash } from "./route";
import type { MeetingPublic } from "./types";

const POLL_MS = 2000;

/** GET /v1/meetings every 2 s (there is no list WebSocket). */
function useMeetings(token: string | null) {
  const [meetings, setMeetings] = useState<MeetingPublic[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    if (!token) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout>;
    const poll = async () => {
      try {
        const list = await listMeetings(token);
        if (!stopped) {
          setMeetings(list);
          setError(null);
        }
      } catch (err) {
        if (!stopped) setError(err instanceof ApiError ? err : new ApiError(0, "unknown", String(err)));
      }
      if (!stopped) timer = setTimeout(poll, POLL_MS);
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [token]);
  return { meetings, error };
}

function TokenForm({ onToken, problem }: { onToken: (token: string) => void; problem: string | null }) {
  const [value, setValue] = useState("");
  return (
    <form
      className="token-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (value.trim()) onToken(value.trim());
      }}
    >
      <h2>Reader token</h2>
      <p>
        {problem ??
          "Open the URL that `audioflow up` prints (it carries ?token=…), or paste the token (AUDIOFLOW_API_TOKEN)."}
      </p>
      <input type="password" value={value} onChange={(e) => setValue(e.target.value)} placeholder="token" autoFocus />
      <button type="submit">Use token</button>
    </form>
  );
}

export function App() {
  const [token, setToken] = useState<string | null>(() => takeToken());
  const [selected, setSelected] = useState<string | null>(() => meetingFromHash());
  const { meetings, error } = useMeetings(token);

  useEffect(() => {
    const onHash = () => setSelected(meetingFromHash());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  const badToken = error?.status === 401;
  const useToken = (t: string) => {
    saveToken(t);
    setToken(t);
  };

  return (
    <ErrorProvider>
      <div className="app">
        <header className="top">
          <h1>
            <a href="#/">audioflow</a>
          </h1>
          <span className="muted">live meeting audio and transcripts</span>
        </header>
        <ErrorList />
        {!token || badToken ? (
          <TokenForm onToken={useToken} problem={badToken ? `The token was refused: ${error.message}` : null} />
        ) : (
          <div className="layout">
            <aside>
              <MeetingList meetings={meetings} error={error} selected={selected} />
            </aside>
            <main>
              {selected ? (
                <MeetingView
                  key={selected}
                  meetingId={selected}
                  token={token}
                  summary={meetings?.find((m) => m.id === selected)}
                />
              ) : (
                <p className="empty">Choose a meeting on the left. New meetings appear as their first chunk arrives.</p>
              )}
            </main>
          </div>
        )}
      </div>
    </ErrorProvider>
  );
}
