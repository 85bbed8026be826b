import { useEffect, useState } from "react";
import { ApiError, meetingListUrl, saveToken, takeToken } from "./api";
import { ErrorList, ErrorProvider } from "./errors";
import { MeetingList } from "./MeetingList";
import { MeetingView } from "./MeetingView";
import { meetingFromHash } from "./route";
import { backoffMs } from "./socket";
import type { ErrorBody, MeetingPublic } from "./types";

/** The meeting list, pushed by the gateway (WS /v1/meetings) whenever it changes; reconnects after a
 * drop, and stops on a refused token (the token form then asks for another). */
function useMeetings(token: string | null) {
  const [meetings, setMeetings] = useState<MeetingPublic[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    if (!token) return;
    let ws: WebSocket | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let attempt = 0;
    const connect = () => {
      const socket = new WebSocket(meetingListUrl(window.location.href, token));
      let refusal: ErrorBody["error"] | null = null;
      socket.onmessage = (message) => {
        const body = JSON.parse(String(message.data)) as Partial<ErrorBody> & { type?: string; meetings?: MeetingPublic[] };
        if (body.error) refusal = body.error;
        else if (body.type === "meetings" && body.meetings) {
          attempt = 0;
          setMeetings(body.meetings);
          setError(null);
        }
      };
      socket.onclose = (event) => {
        if (socket !== ws) return;
        const status = event.code >= 4000 && event.code < 5000 ? event.code - 4000 : 0;
        setError(new ApiError(status, refusal?.code ?? "network", refusal?.message ?? "the gateway cannot be reached; reconnecting"));
        if (status !== 401) timer = setTimeout(connect, backoffMs(++attempt));
      };
      ws = socket;
    };
    connect();
    return () => {
      clearTimeout(timer);
      const socket = ws;
      ws = null;
      if (socket?.readyState === WebSocket.CONNECTING) socket.onopen = () => socket.close(1000);
      else socket?.close(1000);
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
