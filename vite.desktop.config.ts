// Builds the desktop app's web UI into ui/dist/desktop, which the Tauri shell
// (src-tauri/) embeds. Also configures its component tests (Vitest, jsdom).
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  root: 'ui/desktop',
  base: './',
  // The app icon and the notification sound live in assets/ at the root; the UI serves them.
  publicDir: '../../assets',
  plugins: [svelte({ configFile: false })],
  // WebKitGTK 2.40+ / WebView2 / WKWebView all take ES2021.
  build: { outDir: '../dist/desktop', emptyOutDir: true, sourcemap: false, target: 'es2021' },
  clearScreen: false,
  // `npm run tauri dev` loads this dev server (tauri.conf.json devUrl).
  server: { port: 1420, strictPort: true },
  resolve: process.env.VITEST ? { conditions: ['browser'] } : undefined,
  test: {
    root: '.',
    include: ['ui/desktop/src/**/*.test.ts'],
    environment: 'jsdom',
    restoreMocks: true,
    // Component styles are applied in jsdom, so tests can check the layout rules
    // that matter (long names end in an ellipsis, messages wrap anywhere).
    css: { include: [/.*/] },
  },
});
