// UI test of the "ML Containers" panel against a running JupyterLab with the
// jupyter-mlcontainer server extension and a Docker engine. Not wired into the
// Python test suite; see tests/ui/README.md for how to run it.
//
// Environment:
//   MLC_LAB_URL        JupyterLab base URL (default http://localhost:8888/)
//   MLC_LAB_TOKEN      server token (default: none)
//   MLC_PULL_IMAGE     image to pull from the panel (required), e.g.
//                      127.0.0.1:5000/mlcontainer-test/base:bookworm
//   MLC_KERNEL_IMAGE   image to add as a kernel (default: MLC_PULL_IMAGE)
//   MLC_SCREENSHOT     where to save the panel (default docs/panel.png)
import { expect, test } from '@playwright/test';
import { fileURLToPath } from 'node:url';

const LAB_URL = (process.env.MLC_LAB_URL ?? 'http://localhost:8888/').replace(
  /\/?$/,
  '/'
);
const TOKEN = process.env.MLC_LAB_TOKEN ?? '';
const PULL_IMAGE = process.env.MLC_PULL_IMAGE ?? '';
const KERNEL_IMAGE = process.env.MLC_KERNEL_IMAGE || PULL_IMAGE;
// A kernelspec whose image is in a (slow) registry and not on the engine.
const START_PULL_KERNEL = process.env.MLC_START_PULL_KERNEL ?? '';
const START_PULL_IMAGE = process.env.MLC_START_PULL_IMAGE ?? '';
const SCREENSHOT =
  process.env.MLC_SCREENSHOT ??
  fileURLToPath(new URL('../../docs/panel.png', import.meta.url));

/** The REST route of the extension's settings (schema/plugin.json). */
const SETTINGS_API = 'lab/api/settings/jupyter-mlcontainer:plugin';

/** Open the command palette and filter it with `query`; returns its input. */
async function openPalette(page, query) {
  const input = page.locator('.lm-CommandPalette-input');
  await expect(async () => {
    if (!(await input.isVisible())) {
      await page.keyboard.press('Control+Shift+C');
    }
    await expect(input).toBeVisible({ timeout: 2_000 });
  }).toPass({ timeout: 30_000 });
  await input.fill(query);
  return input;
}

/** Call the Jupyter server's REST API with the token. */
async function api(path, init = {}) {
  const response = await fetch(new URL(path, LAB_URL), {
    ...init,
    headers: {
      'Content-Type': 'application/json',
      ...(TOKEN ? { Authorization: `token ${TOKEN}` } : {})
    }
  });
  if (!response.ok) {
    throw new Error(
      `${init.method ?? 'GET'} ${path}: ${response.status} ${await response.text()}`
    );
  }
  return response.status === 204 ? null : response.json();
}

/** The container kernelspec for an image: the first one the server lists, or a new one. */
async function kernelspecFor(image) {
  const { images } = await api('mlcontainer/api/images');
  const found = images.find(
    i => i.tags.includes(image) && i.kernelspecs.length > 0
  );
  if (found) {
    return found.kernelspecs[0];
  }
  const { kernelspec } = await api('mlcontainer/api/kernelspecs', {
    method: 'POST',
    body: JSON.stringify({ image, gpus: 'none' })
  });
  return kernelspec.name;
}

test.describe.configure({ mode: 'serial' });

test.describe('ML Containers panel', () => {
  /** @type {import('@playwright/test').Page} */
  let page;
  /** @type {import('@playwright/test').Locator} */
  let panel;
  /** Sessions this spec started (shut down at the end); others are left alone. */
  const sessions = [];
  let preexisting = new Set();
  /** The plugin's user settings before the spec changed them (restored at the end). */
  let savedSettings = null;

  test.beforeAll(async ({ browser }) => {
    test.skip(
      !PULL_IMAGE,
      'set MLC_PULL_IMAGE to an image the engine can pull'
    );
    preexisting = new Set((await api('api/sessions')).map(s => s.id));
    savedSettings = (await api(SETTINGS_API)).raw ?? '{}';
    // A notebook with a running container kernel, so the Kernels section has a row.
    const kernelName = await kernelspecFor(KERNEL_IMAGE);
    const path = `mlc-ui-test-${Date.now()}.ipynb`;
    await api(`api/contents/${path}`, {
      method: 'PUT',
      body: JSON.stringify({
        type: 'notebook',
        content: { cells: [], metadata: {}, nbformat: 4, nbformat_minor: 5 }
      })
    });
    const session = await api('api/sessions', {
      method: 'POST',
      body: JSON.stringify({
        path,
        name: path,
        type: 'notebook',
        kernel: { name: kernelName }
      })
    });
    sessions.push(session);

    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(`${LAB_URL}lab?reset${TOKEN ? `&token=${TOKEN}` : ''}`);
    await page.locator('.jp-LabShell').waitFor({ timeout: 60_000 });
  });

  test.afterAll(async () => {
    if (savedSettings !== null) {
      await api(SETTINGS_API, {
        method: 'PUT',
        body: JSON.stringify({ raw: savedSettings })
      }).catch(() => undefined);
    }
    for (const session of sessions) {
      await api(`api/sessions/${session.id}`, { method: 'DELETE' }).catch(
        () => undefined
      );
    }
    await page?.close();
  });

  test('opens from the left sidebar with its four sections', async () => {
    await page
      .locator('.jp-SideBar .lm-TabBar-tab[data-id="mlcontainer-panel"]')
      .click();
    panel = page.locator('#mlcontainer-panel');
    await expect(panel).toBeVisible();
    for (const heading of ['Images', 'Kernels', 'GPUs', 'Volumes']) {
      await expect(
        panel.getByRole('heading', { name: heading, exact: true })
      ).toBeVisible();
    }
    await expect(panel.getByTestId('mlc-engine-down')).toHaveCount(0);
  });

  test('shows the running container kernel', async () => {
    const row = panel
      .getByTestId('mlc-kernel-row')
      .filter({ hasText: sessions[0].path });
    await expect(row).toBeVisible({ timeout: 60_000 });
    await expect(row.getByTestId('mlc-kernel-image')).toContainText(
      KERNEL_IMAGE.split('/').pop()
    );
    await expect(row.getByTestId('mlc-kernel-stop')).toBeEnabled();
  });

  test('freezes the running kernel into a Dockerfile', async () => {
    const row = panel
      .getByTestId('mlc-kernel-row')
      .filter({ hasText: sessions[0].path });
    await row.getByTestId('mlc-freeze').click();
    const result = page.getByTestId('mlc-freeze-result');
    const footer = page.locator('.jp-Dialog .jp-Dialog-footer');
    const overwrite = footer.getByRole('button', { name: 'Overwrite' });
    // A Dockerfile left by an earlier run is answered with an overwrite prompt.
    await expect(result.or(overwrite)).toBeVisible({ timeout: 180_000 });
    if (await overwrite.isVisible()) {
      await overwrite.click();
      await expect(result).toBeVisible({ timeout: 180_000 });
    }
    await expect(result.getByTestId('mlc-freeze-dockerfile')).toContainText(
      'Dockerfile'
    );
    await expect(result.getByTestId('mlc-freeze-base')).toBeVisible();
    // The machine side it recorded: this lab's fake NVML has no GPU.
    await expect(result.getByTestId('mlc-freeze-machine')).toContainText(
      'without a GPU'
    );
    await expect(page.getByTestId('mlc-build-button')).toBeVisible();
    await footer.getByRole('button', { name: 'Close', exact: true }).click();
    await expect(result).toHaveCount(0);
  });

  test('pulls an image with a progress bar', async () => {
    await panel.getByTestId('mlc-pull-input').fill(PULL_IMAGE);
    await panel.getByTestId('mlc-pull-button').click();
    const job = panel
      .getByTestId('mlc-job-row')
      .filter({ hasText: PULL_IMAGE })
      .first();
    await expect(job).toBeVisible();
    // A fast pull may end before a poll sees it running: accept either.
    await expect(
      job.getByTestId('mlc-pull-progress').or(job.locator('.mlc-state-done'))
    ).toBeVisible();
    await expect(job).toHaveAttribute('data-state', 'done', {
      timeout: 300_000
    });
    await expect(
      panel
        .getByTestId('mlc-image-row')
        .filter({ hasText: PULL_IMAGE.split('/').pop() })
        .first()
    ).toBeVisible({ timeout: 30_000 });
  });

  test('adds the image as a kernel and runs a cell in a new notebook', async () => {
    const row = panel
      .getByTestId('mlc-image-row')
      .filter({ has: page.locator(`.mlc-chip-tag[title="${KERNEL_IMAGE}"]`) })
      .first();
    await row.getByTestId('mlc-image-add-kernel').click();
    await page.getByTestId('mlc-kernel-dialog-gpus').fill('none');
    await page.getByRole('button', { name: 'Add kernel' }).click();
    await expect(row.getByTestId('mlc-image-kernelspec').first()).toBeVisible({
      timeout: 60_000
    });

    await row.getByTestId('mlc-image-new-notebook').click();
    const notebook = page.locator('.jp-NotebookPanel:visible');
    await expect(
      notebook.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
    ).toBeVisible({ timeout: 180_000 });
    // Text typed while the new document is still loading can be replaced by
    // the loaded content: retry until the first cell shows its output.
    const cell = notebook.locator('.jp-Cell').first();
    await expect(async () => {
      const editor = cell.locator('.cm-content');
      await editor.click();
      await editor.fill('import platform; print("container", platform.node())');
      await expect(editor).toContainText('platform.node()');
      await page.keyboard.press('Shift+Enter');
      await expect(cell.locator('.jp-OutputArea-output')).toContainText(
        'container',
        {
          timeout: 15_000
        }
      );
    }).toPass({ timeout: 180_000 });
    // The status bar names the current notebook's image.
    await expect(page.getByTestId('mlc-statusbar')).toContainText(
      KERNEL_IMAGE,
      {
        timeout: 30_000
      }
    );
    for (const session of await api('api/sessions')) {
      if (
        !preexisting.has(session.id) &&
        !sessions.some(t => t.id === session.id)
      ) {
        sessions.push(session); // the notebook the panel opened
      }
    }
  });

  test('shows the spare kept warm for the next start, with its memory', async () => {
    const spares = panel.getByTestId('mlc-spares');
    await expect(spares).toContainText('Warm spares', { timeout: 60_000 });
    await expect(spares).toContainText(/\d+(\.\d+)? [KMG]?i?B/);
  });

  test('keeps the status bar fresh from the shared poll while the panel is hidden', async () => {
    const tab = page.locator(
      '.jp-SideBar .lm-TabBar-tab[data-id="mlcontainer-panel"]'
    );
    await tab.click();
    await expect(panel).toBeHidden();
    // Hidden, the panel's poll asks only for what the status bar shows (the
    // kernels): two ticks in a row with nothing else between them.
    const isApi = route => request =>
      new URL(request.url()).pathname.endsWith(`/mlcontainer/api/${route}`);
    await page.waitForRequest(isApi('kernels'), { timeout: 30_000 });
    const others = [];
    const record = request => {
      const path = new URL(request.url()).pathname;
      if (/\/mlcontainer\/api\/(status|gpus|images|volumes)$/.test(path)) {
        others.push(path);
      }
    };
    page.on('request', record);
    await page.waitForRequest(isApi('kernels'), { timeout: 30_000 });
    page.off('request', record);
    expect(others).toEqual([]);
    await expect(page.getByTestId('mlc-statusbar')).toContainText(
      KERNEL_IMAGE
    );
    await tab.click();
    await expect(panel).toBeVisible();
  });

  test('shows the Swarm a kernelspec names: its nodes and their GPUs', async () => {
    const status = await api('mlcontainer/api/status');
    const nodes = status.clusters[0].nodes;
    const gpus = nodes.reduce((sum, n) => sum + n.gpus.length, 0);
    await expect(panel.getByTestId('mlc-cluster')).toContainText(
      `${nodes.length}/${nodes.length} nodes ready, ${gpus}/${gpus} GPUs free`,
      { timeout: 60_000 }
    );
    const rows = panel
      .getByTestId('mlc-section-gpus')
      .getByTestId('mlc-cluster-gpu-row');
    await expect(rows).toHaveCount(gpus, { timeout: 60_000 });
    await expect(rows.first()).toContainText(nodes.find(n => n.gpus.length).hostname);
    await expect(rows.first()).toContainText('free');
    // The row of the kernelspec's image says which nodes hold that build (every one, here):
    // "checking" first, then each node's answer, on a later poll.
    const images = panel.getByTestId('mlc-section-images');
    const held = images.locator(
      '[data-testid="mlc-image-nodes"][data-state="done"] [data-testid="mlc-image-node"][data-state="present"]'
    );
    await expect(held).toHaveCount(nodes.length, { timeout: 120_000 });
    for (const node of nodes) {
      await expect(
        images.locator(`[data-testid="mlc-image-node"][data-node="${node.hostname}"]`)
      ).toHaveCount(1);
    }
  });

  test('shows the GPUs, or why there are none', async () => {
    const gpus = await api('mlcontainer/api/gpus');
    const section = panel.getByTestId('mlc-section-gpus');
    if (!gpus.available) {
      await expect(section.getByTestId('mlc-gpu-unavailable')).toHaveText(
        gpus.reason
      );
      return;
    }
    await expect(section.getByTestId('mlc-gpu-row')).toHaveCount(
      gpus.gpus.length
    );
    for (const gpu of gpus.gpus) {
      const row = section.locator(
        `[data-testid="mlc-gpu-row"][data-index="${gpu.index}"]`
      );
      await expect(row).toContainText(gpu.name);
      await expect(row.getByTestId('mlc-gpu-util')).toBeVisible();
      await expect(row.getByTestId('mlc-gpu-memory')).toBeVisible();
      for (const proc of gpu.processes.filter(p => p.notebook_path)) {
        await expect(row.getByTestId('mlc-gpu-notebooks')).toContainText(
          proc.notebook_path,
          {
            timeout: 15_000
          }
        );
      }
    }
  });

  test('saves a screenshot of the panel', async () => {
    // Tall, so that the four sections usually fit; with many local images
    // the list scrolls, which is fine for a picture, so nothing here
    // depends on how many images the engine happens to hold.
    await page.setViewportSize({ width: 1400, height: 2200 });
    await panel.locator('.mlc-content').evaluate(node => node.scrollTo(0, 0));
    for (const name of ['Images', 'Kernels', 'GPUs', 'Volumes']) {
      await expect(
        panel.getByRole('heading', { name, exact: true })
      ).toBeAttached();
    }
    await expect(
      panel.getByRole('heading', { name: 'Images', exact: true })
    ).toBeInViewport();
    await panel.screenshot({ path: SCREENSHOT });
  });

  test('lists its commands in the command palette', async () => {
    await panel.getByRole('heading', { name: 'Images', exact: true }).click();
    await openPalette(page, 'ML Containers');
    // The modal palette hides its category headers: "Refresh" matches the
    // query through its category, "ML Containers".
    const palette = page.locator('.lm-CommandPalette');
    const item = label =>
      palette.locator('.lm-CommandPalette-item', {
        has: page.locator('.lm-CommandPalette-itemLabel', {
          hasText: new RegExp(`^${label}$`)
        })
      });
    for (const label of [
      'Pull Image…',
      'Refresh',
      'Stop Container Kernel…',
      'Freeze Container Kernel…',
      'Add Kernel for Image…',
      'New Notebook in Image…',
      'Remove Image…',
      'Open ML Containers Panel'
    ]) {
      await expect(item(label)).toBeVisible();
    }
    // Without an argument, "Pull Image…" asks for the image in a dialog.
    await item('Pull Image…').click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toContainText('Pull an image');
    await expect(dialog.locator('input')).toBeVisible();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await expect(dialog).toHaveCount(0);
  });

  test('refuses to remove an image that a kernelspec uses, and says which', async () => {
    await panel.getByRole('heading', { name: 'Images', exact: true }).click();
    const row = panel
      .getByTestId('mlc-image-row')
      .filter({ has: page.locator(`.mlc-chip-tag[title="${KERNEL_IMAGE}"]`) })
      .first();
    await row.getByTestId('mlc-image-remove').click();
    const confirm = page.locator('.jp-Dialog');
    await expect(confirm).toContainText('Remove image?');
    await confirm.getByRole('button', { name: 'Remove' }).click();
    const refusal = page.locator('.jp-Dialog');
    await expect(refusal).toContainText('Could not remove');
    await expect(refusal).toContainText('kernelspec');
    await refusal.getByRole('button', { name: /Dismiss|Ok|Close/ }).click();
    await expect(row).toBeVisible(); // still there
  });

  test('follows the poll interval set in the settings editor', async () => {
    const updated = panel.getByTestId('mlc-updated');
    await expect(updated).toHaveAttribute('data-interval', '2');
    await openPalette(page, 'Settings Editor');
    await page
      .locator('.lm-CommandPalette-item', {
        has: page.locator('.lm-CommandPalette-itemLabel', {
          hasText: /^Settings Editor$/
        })
      })
      .click();
    await page
      .locator('.jp-PluginList')
      .getByText('ML Containers', { exact: true })
      .click();
    const interval = page.locator(
      'input[id$="jupyter-mlcontainer:plugin_pollInterval"]'
    );
    await expect(interval).toHaveValue('2');
    await expect(
      page.locator('input[id$="jupyter-mlcontainer:plugin_confirmStopKernel"]')
    ).toBeChecked();
    await interval.fill('5');
    // Saved by the editor, then applied to the panel's poll.
    await expect(updated).toHaveAttribute('data-interval', '5', {
      timeout: 30_000
    });
    await expect
      .poll(async () => JSON.parse((await api(SETTINGS_API)).raw || '{}'))
      .toMatchObject({ pollInterval: 5 });
    await interval.fill('2');
    await expect(updated).toHaveAttribute('data-interval', '2', {
      timeout: 30_000
    });
  });

  test('offers to restore a frozen notebook whose image is missing', async () => {
    // A notebook frozen elsewhere: its metadata names an image and a kernelspec
    // this machine lacks, and a Dockerfile beside it.
    const stamp = Date.now();
    const folder = `restore-${stamp}`;
    const registryHost = PULL_IMAGE.split('/')[0]; // nothing is pushed there: the pull fails, the build runs
    const image = `${registryHost}/mlctest/restored-ui:${stamp}`;
    const kernelspec = `mlc-restored-ui-${stamp}`;
    const baseKernel = await kernelspecFor(KERNEL_IMAGE);
    await api(`api/contents/${folder}`, {
      method: 'PUT',
      body: JSON.stringify({ type: 'directory' })
    });
    await api(`api/contents/${folder}/Dockerfile`, {
      method: 'PUT',
      body: JSON.stringify({
        type: 'file',
        format: 'text',
        // Its own text each run: a restore built from the same files earlier is reused
        // ("built here earlier"), which is not what this test is about.
        content: `FROM ${KERNEL_IMAGE}\nLABEL org.jupyter.mlcontainer.test="restored-ui-${stamp}"\n# \u202e hidden \x1b[2K\n`
      })
    });
    const path = `${folder}/frozen.ipynb`;
    await api(`api/contents/${path}`, {
      method: 'PUT',
      body: JSON.stringify({
        type: 'notebook',
        content: {
          cells: [
            { cell_type: 'markdown', metadata: {}, source: 'Trained on an H100.' },
            {
              cell_type: 'code', metadata: {}, source: 'x = torch.ones(3).cuda()',
              outputs: [], execution_count: null
            }
          ],
          metadata: {
            kernelspec: { name: baseKernel, display_name: 'base', language: 'python' },
            mlcontainer: {
              image, dockerfile: 'Dockerfile', kernelspec,
              // Frozen on an A100 with a PyTorch built for sm_80 alone; this
              // lab's fake NVML host has an H100 (sm_90), driver 550 (CUDA 12.4).
              machine: {
                version: 1, cuda_runtime: '12.4.1', cudnn: '9.1.0', nccl: '2.21.5',
                frameworks: { torch: { version: '2.5.1+cu124', cuda: '12.4', cudnn: '90100', arch: ['sm_80'] } },
                gpus: [{ name: 'NVIDIA A100-SXM4-80GB', compute_capability: '8.0', memory_total: 85899345920, mig: false }],
                gpus_known: true, driver: '550.54.15', driver_cuda: '12.4'
              },
              kernel_options: { gpus: '1', shm_size: '8g', env: ['HF_HOME'] }
            }
          },
          nbformat: 4,
          nbformat_minor: 5
        }
      })
    });
    await page.goto(
      `${LAB_URL}lab/tree/${path}${TOKEN ? `?token=${TOKEN}` : ''}`
    );
    // The offer shows the plan before anything happens: the recorded image
    // (pulled first: it names a registry), the Dockerfile's own text and the
    // kernelspec; nothing is pulled or built until it is confirmed.
    const dialog = page.getByTestId('mlc-restore-dialog');
    await expect(dialog).toContainText(image, { timeout: 60_000 });
    await expect(dialog.getByTestId('mlc-restore-dockerfile')).toContainText(
      `LABEL org.jupyter.mlcontainer.test="restored-ui-${stamp}"`
    );
    // What would reorder or hide text on screen is shown as an escape (issue 22, finding 6).
    await expect(dialog.getByTestId('mlc-restore-dockerfile')).toContainText(
      '# \\u202e hidden \\x1b[2K'
    );
    await expect(dialog.getByTestId('mlc-restore-kernelspec')).toContainText(
      kernelspec
    );
    // This host against the notebook's machine, one row per check: the GPU
    // and the driver hold, another model is a warning, and a build without
    // sm_90 blocks, so the dialog's button says it restores anyway.
    const checks = dialog.getByTestId('mlc-restore-checks');
    await expect(checks.getByTestId('mlc-check-gpu')).toHaveAttribute('data-verdict', 'holds');
    await expect(checks.getByTestId('mlc-check-driver')).toHaveAttribute('data-verdict', 'holds');
    await expect(checks.getByTestId('mlc-check-gpu-model')).toHaveAttribute('data-verdict', 'warning');
    const arch = checks.getByTestId('mlc-check-arch-torch');
    await expect(arch).toHaveAttribute('data-verdict', 'blocks');
    await expect(arch).toContainText('no code for sm_90');
    await expect(arch).toContainText('Use a PyTorch build that includes sm_90');
    await expect(dialog).toContainText('HF_HOME');
    if (process.env.MLC_RESTORE_SCREENSHOT) {
      await page
        .locator('.jp-Dialog-content')
        .screenshot({ path: process.env.MLC_RESTORE_SCREENSHOT });
    }
    const before = await api('mlcontainer/api/jobs');
    expect(
      before.jobs.filter(
        job => job.target === image || job.target.startsWith('mlcontainer-restored/frozen:')
      )
    ).toEqual([]);
    await page
      .locator('.jp-Dialog-footer')
      .getByRole('button', { name: 'Restore anyway' })
      .click();
    await expect(
      page.getByText(`Kernel "${kernelspec}" restored`)
    ).toBeVisible({ timeout: 300_000 });
    const specs = await api('api/kernelspecs');
    expect(Object.keys(specs.kernelspecs)).toContain(kernelspec);
    for (const session of await api('api/sessions')) {
      if (session.path === path) {
        sessions.push(session); // shut down with the others
        expect(session.kernel.name).toBe(kernelspec);
      }
    }
  });

  test('shows the pull of a missing image while its kernel starts', async () => {
    // The session's start waits for the pull: the panel shows it meanwhile.
    const started = api('api/sessions', {
      method: 'POST',
      body: JSON.stringify({
        path: `mlc-ui-pull-${Date.now()}.ipynb`,
        type: 'notebook',
        kernel: { name: START_PULL_KERNEL }
      })
    });
    const job = panel
      .getByTestId('mlc-job-row')
      .filter({ hasText: START_PULL_IMAGE })
      .first();
    await expect(job).toHaveAttribute('data-state', 'running', {
      timeout: 60_000
    });
    await expect(job.getByTestId('mlc-pull-progress')).toBeVisible();
    const session = await started;
    sessions.push(session);
    expect(session.kernel.name).toBe(START_PULL_KERNEL);
    await expect(job).toHaveAttribute('data-state', 'done', {
      timeout: 60_000
    });
  });
});
