// Builds the administration console into ui/dist/admin, which the server
// embeds and serves at /admin. Also configures the component tests.
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  root: 'ui/admin',
  base: '/admin/',
  plugins: [svelte()],
  build: { outDir: '../dist/admin', emptyOutDir: true, sourcemap: false },
  resolve: process.env.VITEST ? { conditions: ['browser'] } : undefined,
  test: {
    root: '.',
    include: ['ui/admin/src/**/*.test.ts'],
    environment: 'jsdom',
  },
});
