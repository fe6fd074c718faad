import { defineConfig } from 'vitest/config';
import { TOOL_NAMES, TOOLS } from './test/support/system-tools.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // ORT sessions use both cores; running test files in parallel only adds contention.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Tests that make onnxruntime sessions directly (not through src/runtime/session.ts) leave no telemetry
    // files in the shared TMPDIR either (test/runtime/ort-telemetry.test.ts checks the product without this).
    env: { ORT_DISABLE_TELEMETRY: '1' },
    // Optional system tools (test/support/system-tools.ts): tests tagged with one are skipped where it is
    // missing, and the run ends with one line per tool saying how to install it.
    globalSetup: ['test/support/tool-cache.ts'],
    reporters: ['default', './test/support/skip-summary.ts'],
    tags: TOOL_NAMES.map((name) => ({ name, description: `needs ${TOOLS[name].label}` })),
  },
});
