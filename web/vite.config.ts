import { defineConfig } from "vite";

// The router serves dist/ from inside the rma binary; nothing is fetched from elsewhere at run
// time (no CDN, no web fonts).
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    reportCompressedSize: true,
  },
  server: {
    proxy: { "/api": { target: "http://127.0.0.1:8787", ws: true }, "/health": "http://127.0.0.1:8787" },
  },
});
