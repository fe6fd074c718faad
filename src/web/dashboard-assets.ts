// Where the built dashboard (index.html and its bundle) lives: the web port serves this folder at `/`.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The package root: two levels up from both src/web/ (tsx) and dist/web/ (compiled). */
const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DASHBOARD_DIR = `${PACKAGE_ROOT}dist/dashboard`;

/** What `/` answers when the dashboard is not built: how to build it. */
export const DASHBOARD_MISSING_HINT = `the dashboard is not built (no ${DASHBOARD_DIR}/index.html); run \`npm run build\` in the narrowtune package`;

/** dashboard/build.cjs: present in a checkout, absent from the installed package (which ships dist/dashboard). */
const BUILD_SCRIPT = `${PACKAGE_ROOT}dashboard/build.cjs`;
let rebuilt = false;

/**
 * The folder to serve at `/`, or null when the dashboard has not been built. In a checkout (which runs from src/
 * through tsx, so dist/ may be old or missing) the first call rebuilds it when a source is newer (~0.2 s).
 */
export function dashboardDir(): string | null {
  if (!rebuilt && existsSync(BUILD_SCRIPT)) {
    rebuilt = true;
    try {
      // Loaded by path, not imported: the build needs esbuild, a devDependency, which only a checkout has.
      const build = createRequire(import.meta.url)(BUILD_SCRIPT) as { ensureDashboard(out: string): string };
      build.ensureDashboard(DASHBOARD_DIR);
    } catch (e) {
      // Sources without esbuild (an image pruned of devDependencies): serve the dashboard built at install time.
      process.emitWarning(`dashboard not rebuilt, serving ${DASHBOARD_DIR} as it is: ${(e as Error).message}`);
    }
  }
  return existsSync(`${DASHBOARD_DIR}/index.html`) ? DASHBOARD_DIR : null;
}
