// Errors shown to the user: a small list in a context, each dismissable; the same message is not repeated.

import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";

export interface ShownError {
  id: number;
  message: string;
}

interface Errors {
  errors: ShownError[];
  report: (message: string) => void;
  dismiss: (id: number) => void;
}

const ErrorContext = createContext<Errors>({ errors: [], report: () => {}, dismiss: () => {} });

let nextId = 1;

export function ErrorProvider({ children }: { children: ReactNode }) {
  const [errors, setErrors] = useState<ShownError[]>([]);
  const report = useCallback((message: string) => {
    setErrors((list) => (list.some((e) => e.message === message) ? list : [...list.slice(-4), { id: nextId++, message }]));
  }, []);
  const dismiss = useCallback((id: number) => setErrors((list) => list.filter((e) => e.id !== id)), []);
  const value = useMemo(() => ({ errors, report, dismiss }), [errors, report, dismiss]);
  return <ErrorContext.Provider value={value}>{children}</ErrorContext.Provider>;
}

export function useErrors(): Errors {
  return useContext(ErrorContext);
}

export function ErrorList() {
  const { errors, dismiss } = useErrors();
  if (errors.length === 0) return null;
  return (
    <ul className="errors" role="alert">
      {errors.map((e) => (
        <li key={e.id}>
          <span>{e.message}</span>
          <button type="button" onClick={() => dismiss(e.id)} aria-label="dismiss">
            ×
          </button>
        </li>
      ))}
    </ul>
  );
}
