import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the API to a running gateway (`audioflow up`, port 8080 unless AUDIOFLOW_API says).
const api = process.env.AUDIOFLOW_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  base: "./", // asset paths relative to index.html, whatever path the gateway serves it under
  build: {
    outDir: "../api/src/audioflow/api/static",
    emptyOutDir: true,
  },
  server: {
    proxy: { "/v1": { target: api, ws: true } },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
