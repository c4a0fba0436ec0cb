// Builds the administration console into ui/dist/admin, which the server
// embeds at build time and serves at /admin (assets under /admin/assets/).
// Also configures its component tests (Vitest, jsdom).
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  root: 'ui/admin',
  base: '/admin/',
  // Everything the console needs is in this config; there is no svelte.config.js.
  plugins: [svelte({ configFile: false })],
  build: { outDir: '../dist/admin', emptyOutDir: true, sourcemap: false, assetsInlineLimit: 0 },
  // `npm run dev:admin` serves the sources and passes API calls to a running server.
  server: { proxy: { '/api': process.env.HUTONG_ADMIN_API ?? 'http://127.0.0.1:7380' } },
  // Svelte's client build (not its server one) in the jsdom tests.
  resolve: process.env.VITEST ? { conditions: ['browser'] } : undefined,
  test: {
    root: '.',
    include: ['ui/admin/src/**/*.test.ts'],
    environment: 'jsdom',
    restoreMocks: true,
  },
});
