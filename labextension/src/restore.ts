/**
 * Restore on open: a notebook frozen elsewhere carries `metadata.mlcontainer`
 * (image, Dockerfile, kernelspec). When such a notebook becomes current and
 * its kernelspec is unknown here, offer once (per notebook, per page load) to
 * restore it. The notebook is untrusted, so the offer shows the server's plan
 * first: where the image comes from, the Dockerfile's text and the files its
 * build sends, the kernelspec it writes. Only a confirmed plan is done (the
 * server refuses one that changed since); then the notebook switches kernel.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { formatBytes, percent, printable } from './format';
import { MLContainerModel } from './model';
import { reportError } from './notify';
import { IFreezeRecord, IJob, IRestorePlan } from './tokens';

export function setupRestore(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  model: MLContainerModel,
  trans: TranslationBundle
): void {
  const asked = new Set<string>();
  const check = (panel: NotebookPanel | null) => {
    if (!panel) {
      return;
    }
    void offerRestore(app, model, trans, panel, asked).catch(error =>
      console.warn('jupyter-mlcontainer: restore check failed', error)
    );
  };
  tracker.currentChanged.connect((_, panel) => check(panel));
  void app.restored.then(() => check(tracker.currentWidget));
}

async function offerRestore(
  app: JupyterFrontEnd,
  model: MLContainerModel,
  trans: TranslationBundle,
  panel: NotebookPanel,
  asked: Set<string>
): Promise<void> {
  const context = panel.context;
  const path = context.path;
  if (asked.has(path)) {
    return;
  }
  asked.add(path);
  await context.ready;
  const record = context.model.getMetadata('mlcontainer') as
    | Partial<IFreezeRecord>
    | undefined;
  if (!record || typeof record.kernelspec !== 'string') {
    return;
  }
  const specs = app.serviceManager.kernelspecs;
  await specs.ready;
  // Kernelspec names are case-insensitive on disk: "Python3" is the user's python3.
  const wanted = record.kernelspec.toLowerCase();
  const known = Object.keys(specs.specs?.kernelspecs ?? {});
  if (known.some(name => name.toLowerCase() === wanted)) {
    return;
  }

  const serverPath = context.localPath ?? path;
  let plan: IRestorePlan;
  try {
    plan = await model.api.restorePlan(serverPath);
  } catch (error) {
    await reportError(
      trans.__("This notebook's kernel cannot be restored"),
      error
    );
    return;
  }
  const answer = await showDialog({
    title: trans.__('Restore the container kernel?'),
    body: new Widget({ node: planView(plan, trans) }),
    buttons: [
      Dialog.cancelButton({ label: trans.__('Not now') }),
      plan.blocked
        ? Dialog.warnButton({ label: trans.__('Restore anyway') })
        : Dialog.okButton({ label: trans.__('Restore kernel') })
    ],
    // Enter must not confirm what came with someone else's notebook.
    defaultButton: 0
  });
  if (!answer.button.accept) {
    return;
  }
  const image = plan.image;

  let kernelspec: string;
  try {
    const result = await model.api.restoreNotebook(
      serverPath,
      plan.fingerprint,
      plan.blocked
    );
    if ('kernelspec' in result) {
      kernelspec = result.kernelspec;
    } else {
      const job = await followBuild(model, trans, result.job, image);
      if (job.state !== 'done') {
        await reportError(
          trans.__('Could not restore %1', image),
          job.error ??
            (job.kind === 'pull'
              ? trans.__('The pull ended: %1.', job.state)
              : trans.__('The build ended: %1.', job.state))
        );
        return;
      }
      kernelspec = job.result?.kernelspec ?? plan.kernelspec;
    }
    await specs.refreshSpecs();
    if (!panel.isDisposed) {
      await panel.sessionContext.changeKernel({ name: kernelspec });
    }
    Notification.success(
      trans.__('Kernel "%1" restored for %2.', kernelspec, path),
      { autoClose: 5000 }
    );
  } catch (error) {
    await reportError(trans.__('Could not restore the kernel'), error);
  }
}

/**
 * The plan as the dialog's body. Everything in it comes from an untrusted
 * notebook and its folder: it is set as text, never as markup.
 */
function planView(plan: IRestorePlan, trans: TranslationBundle): HTMLElement {
  const node = document.createElement('div');
  node.className = 'mlc-restore-dialog';
  node.dataset.testid = 'mlc-restore-dialog';
  // Every text here comes from the notebook, or names what it names: shown as it really is.
  const add = (tag: string, text: string, testid?: string): HTMLElement => {
    const element = document.createElement(tag);
    element.textContent = printable(text);
    if (testid) {
      element.dataset.testid = testid;
    }
    node.appendChild(element);
    return element;
  };
  const dockerfile = plan.dockerfile ?? 'Dockerfile';
  const how = {
    present: () => trans.__('Use the image %1, which is here.', plan.image),
    pull: () =>
      plan.build_if_pull_fails
        ? trans.__(
            'Pull %1 from its registry; if that fails, build %2 from %3.',
            plan.recorded_image,
            plan.build_tag,
            dockerfile
          )
        : trans.__('Pull %1 from its registry.', plan.recorded_image),
    build: () =>
      trans.__('Build the image %1 from %2.', plan.build_tag, dockerfile)
  }[plan.source]();
  add('p', how, 'mlc-restore-source');
  add(
    'p',
    trans.__('Add the kernel "%1".', plan.kernelspec),
    'mlc-restore-kernelspec'
  );
  hostChecks(plan, trans, node);
  for (const note of [...plan.notes, plan.kernelspec_note].filter(n => n)) {
    add('p', note, 'mlc-restore-note').className = 'mlc-restore-note';
  }
  if (plan.source !== 'present' && plan.dockerfile_text !== null) {
    const files = [dockerfile, ...plan.context_files];
    add(
      'p',
      trans.__(
        "The build runs this Dockerfile's RUN lines on this machine and sends %1 (%2). Read it before you restore: it comes with the notebook.",
        files.join(', '),
        formatBytes(plan.context_bytes)
      ),
      'mlc-restore-context'
    );
    add('pre', plan.dockerfile_text, 'mlc-restore-dockerfile').className =
      'mlc-build-log mlc-restore-dockerfile';
  }
  return node;
}

/**
 * This host against what the notebook's GPU code needs: one row per check,
 * holds / warning / blocks, with the reason and what to do.
 */
function hostChecks(
  plan: IRestorePlan,
  trans: TranslationBundle,
  node: HTMLElement
): void {
  if (!plan.checks.length) {
    return;
  }
  const verdicts = {
    holds: trans.__('holds'),
    warning: trans.__('warning'),
    blocks: trans.__('blocks')
  };
  const list = document.createElement('ul');
  list.className = 'mlc-host-checks';
  list.dataset.testid = 'mlc-restore-checks';
  for (const check of plan.checks) {
    const row = document.createElement('li');
    row.className = `mlc-host-check mlc-host-check-${check.verdict}`;
    row.dataset.testid = `mlc-check-${check.name}`;
    row.dataset.verdict = check.verdict;
    const verdict = document.createElement('span');
    verdict.className = 'mlc-host-check-verdict';
    verdict.textContent = verdicts[check.verdict] ?? check.verdict;
    row.appendChild(verdict);
    row.appendChild(document.createTextNode(' ' + printable(check.reason)));
    if (check.fix && check.verdict !== 'holds') {
      const fix = document.createElement('div');
      fix.className = 'mlc-host-check-fix';
      fix.textContent = printable(check.fix);
      row.appendChild(fix);
    }
    list.appendChild(row);
  }
  const title = document.createElement('p');
  title.textContent = plan.blocked
    ? trans.__(
        'This host cannot run the notebook as it ran: a check blocks. Restoring anyway makes a CPU kernel: its GPU cells fail or run on the CPU until that is fixed.'
      )
    : trans.__('This host, against what the notebook ran with:');
  title.dataset.testid = 'mlc-restore-checks-title';
  node.appendChild(title);
  node.appendChild(list);
}

/** Show a build job (panel row and a notification) until it ends. */
async function followBuild(
  model: MLContainerModel,
  trans: TranslationBundle,
  job: IJob,
  image: string
): Promise<IJob> {
  model.track(job);
  const id = Notification.emit(
    job.kind === 'pull'
      ? trans.__('Pulling %1…', image)
      : trans.__('Building %1…', image),
    'in-progress',
    { autoClose: false }
  );
  const onChanged = () => {
    const current = model.job(job.id);
    const steps = current?.layers['steps'];
    if (!current || !steps || !(steps.total > 0)) {
      return;
    }
    const last = current.log.length ? current.log[current.log.length - 1] : '';
    Notification.update({
      id,
      message:
        trans.__(
          'Building %1: step %2/%3 (%4)',
          image,
          steps.current,
          steps.total,
          percent((steps.current - 1) / steps.total)
        ) + (last ? `\n${last.slice(0, 120)}` : ''),
      type: 'in-progress',
      autoClose: false
    });
  };
  model.changed.connect(onChanged);
  try {
    return await model.whenFinished(job.id);
  } finally {
    model.changed.disconnect(onChanged);
    Notification.dismiss(id);
  }
}
