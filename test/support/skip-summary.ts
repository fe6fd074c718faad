// Reporter: after the run, one line per optional system tool whose tests were skipped here, naming the tool,
// what is wrong and the apt-get line that brings it.
import type { Reporter, TestCase, TestModule, TestSuite } from 'vitest/node';
import { aptLine, REQUIRE_ALL_TOOLS, type Tool, TOOLS } from './system-tools.js';

/** The tools missing for a test, as needs() recorded them on it or on a suite around it. */
function missingFor(test: TestCase): Partial<Record<Tool, string>> {
  const found: Partial<Record<Tool, string>> = {};
  for (let t: TestCase | TestSuite | TestModule = test; t.type !== 'module'; t = t.parent) Object.assign(found, t.meta().missingTools);
  return found;
}

export default class SkipSummary implements Reporter {
  onTestRunEnd(modules: readonly TestModule[]): void {
    const skipped = new Map<Tool, { count: number; why: string }>();
    for (const m of modules) {
      for (const test of m.children.allTests('skipped')) {
        for (const [tool, why] of Object.entries(missingFor(test)) as [Tool, string][]) {
          const s = skipped.get(tool) ?? { count: 0, why };
          s.count++;
          skipped.set(tool, s);
        }
      }
    }
    if (skipped.size === 0) return;
    const lines = [...skipped].map(([tool, { count, why }]) => {
      const note = TOOLS[tool].note ? ` (${TOOLS[tool].note})` : '';
      return `skipped ${count} test${count === 1 ? '' : 's'} without ${TOOLS[tool].label} (${why}): ${aptLine(tool)}${note}`;
    });
    process.stdout.write(`\n${lines.join('\n')}\n${REQUIRE_ALL_TOOLS}=1 makes these skips failures; .ci/run installs every tool and sets it.\n`);
  }
}
