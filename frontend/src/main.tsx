import { createRoot } from "react-dom/client";
import { takeToken } from "./api";
import { App } from "./App";
import "./styles.css";

takeToken(); // out of the address bar before anything else runs (App reads it back from sessionStorage)
createRoot(document.getElementById("root")!).render(<App />);
