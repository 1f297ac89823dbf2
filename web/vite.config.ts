import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';
import { fileURLToPath } from 'node:url';

// One SDK for everyone: the app bundles the sibling sdk/ sources, not a published copy.
export default defineConfig({
  plugins: [preact()],
  // Relative asset URLs: index.html works at `/` and behind any prefix.
  base: './',
  resolve: {
    alias: { 'chorus-sdk': fileURLToPath(new URL('../sdk/src/index.ts', import.meta.url)) },
  },
  server: { fs: { allow: ['..'] } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    assetsInlineLimit: 0,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/app-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
});
