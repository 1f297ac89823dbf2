// Builds dist/chorus.mjs (ESM), dist/chorus.js (IIFE, global `Chorus`), dist/mesibo.js (IIFE,
// global `Mesibo`: the Mesibo compatibility layer) and
// dist/chorus.d.ts (the declarations of every module, flattened into one file
// and type-checked). Run by `npm run build` after the tsc type-check.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const banner = `/*! Chorus SDK ${pkg.version} — generated from sdk/src by \`npm run build\`; do not edit. */`;
mkdirSync(dist, { recursive: true });

const common = {
  entryPoints: [join(root, 'src/index.ts')],
  bundle: true,
  target: 'es2020',
  platform: 'browser',
  legalComments: 'none',
  banner: { js: banner },
  logLevel: 'warning',
};
await build({ ...common, format: 'esm', outfile: join(dist, 'chorus.mjs') });
await build({ ...common, format: 'iife', globalName: 'Chorus', outfile: join(dist, 'chorus.js') });
// The Mesibo compatibility layer: a classic script defining the global `Mesibo` and the
// MESIBO_* / MESIBOCALL_* constants (src/mesibo/global.ts), with the SDK code it needs.
await build({
  ...common,
  entryPoints: [join(root, 'src/mesibo/global.ts')],
  banner: { js: banner.replace('Chorus SDK', 'Chorus SDK: Mesibo compatibility layer,') },
  format: 'iife',
  outfile: join(dist, 'mesibo.js'),
});

// Declarations: emit per module, then flatten (modules are concatenated in
// dependency order with their intra-package imports removed).
const tmp = mkdtempSync(join(tmpdir(), 'chorus-dts-'));
const tsc = join(root, 'node_modules/typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json'), '--emitDeclarationOnly', '--outDir', tmp], {
  stdio: 'inherit',
});
// proto/frames is generated from crates/proto; protocol re-exports it.
const order = ['proto/frames', 'protocol', 'errors', 'emitter', 'rest', 'upload', 'call', 'direct', 'client', 'cache'];
let out = `${banner}\n`;
for (const m of order) {
  let text = readFileSync(join(tmp, `${m}.d.ts`), 'utf8');
  // Drop `import ... from './x.js';` (possibly multi-line) — every such name is declared in this file.
  text = text.replace(/^import\s[\s\S]*?from\s+['"]\.\/[^'"]+['"];\s*$/gm, '');
  // Drop `export type { ... } from './x.js';`: the names are declared in this file already.
  text = text.replace(/^export (?:type )?\{[^}]*\}\s+from\s+['"]\.\/[^'"]+['"];\s*$/gm, '');
  text = text.replace(/^export \{\};\s*$/gm, '');
  text = text.replace(/import\(["']\.\/[^"']+["']\)\./g, '');
  out += `\n// ---- ${m}\n${text.trim()}\n`;
}
const index = readFileSync(join(tmp, 'index.d.ts'), 'utf8');
const version = index.match(/export declare const VERSION[^;]*;/);
if (!version) throw new Error('index.d.ts: VERSION not found');
out += `\n// ---- index\n${version[0]}\n`;
writeFileSync(join(dist, 'chorus.d.ts'), out);
rmSync(tmp, { recursive: true, force: true });

// Check the flattened file on its own, and that it declares everything index.ts exports.
const checkDir = mkdtempSync(join(tmpdir(), 'chorus-dts-check-'));
writeFileSync(join(checkDir, 'chorus.d.ts'), out);
const names = [...index.matchAll(/export (?:type )?\{([^}]*)\}/g)].flatMap((m) =>
  m[1].split(',').map((s) => s.trim()).filter(Boolean),
);
writeFileSync(
  join(checkDir, 'check.ts'),
  `import { ${names.join(', ')} } from './chorus';\n` +
    `import type { ServerFrame, ClientFrame, CallEvent } from './chorus';\n` +
    `export type Frames = ServerFrame | ClientFrame | CallEvent;\n`,
);
writeFileSync(
  join(checkDir, 'tsconfig.json'),
  JSON.stringify({
    compilerOptions: {
      noEmit: true,
      strict: true,
      lib: ['es2020', 'dom', 'dom.iterable'],
      types: [],
      module: 'esnext',
      moduleResolution: 'bundler',
      skipLibCheck: false,
    },
    files: ['check.ts'],
  }),
);
execFileSync(process.execPath, [tsc, '-p', join(checkDir, 'tsconfig.json')], { stdio: 'inherit' });
rmSync(checkDir, { recursive: true, force: true });
console.log('built dist/chorus.mjs, dist/chorus.js, dist/mesibo.js, dist/chorus.d.ts');
