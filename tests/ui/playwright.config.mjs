// Playwright Test configuration for tests/ui.
// CHROMIUM: browser binary to use instead of a Playwright-downloaded one.
// MLC_UI_OUTPUT: where traces and failure artefacts go (outside the repository).
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default {
  testDir: '.',
  outputDir: process.env.MLC_UI_OUTPUT ?? join(tmpdir(), 'mlc-ui-test-results'),
  testMatch: 'panel.spec.mjs',
  timeout: 600_000,
  workers: 1,
  reporter: 'list',
  use: {
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update'
      ]
    }
  }
};
