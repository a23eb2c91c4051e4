/**
 * Restore on open: a notebook frozen elsewhere carries `metadata.mlcontainer`
 * (image, Dockerfile, kernelspec). When such a notebook becomes current and
 * its kernelspec is unknown here, offer once (per notebook, per page load) to
 * restore it. The notebook is untrusted, so the offer shows the server's plan
 * first: where the image comes from, the Dockerfile's text and the files its
 * build sends, the kernelspec it writes. Only a confirmed plan is done (the
 * server refuses one that changed since); then the notebook switches kernel.
 */
import { ILabShell, JupyterFrontEnd } from '@jupyterlab/application';
import {
  Dialog,
  Notification,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { restoreNotebook, restorePlan } from './api';
import { errorMessage, formatBytes, percent } from './format';
import { getMetadata, IModelLike } from './freeze';
import { MLContainerModel } from './model';
import { IFreezeRecord, IJob, IRestorePlan } from './tokens';

/** A notebook panel, duck-typed. */
interface INotebookLike {
  context?: {
    path?: string;
    localPath?: string;
    ready?: Promise<void>;
    model?: IModelLike;
  };
  sessionContext?: {
    changeKernel(options: { name: string }): Promise<unknown>;
  };
  isDisposed?: boolean;
}

export function setupRestore(
  app: JupyterFrontEnd,
  labShell: ILabShell | null,
  model: MLContainerModel
): void {
  const asked = new Set<string>();
  const check = (widget: Widget | null) => {
    void offerRestore(app, model, widget as INotebookLike | null, asked).catch(
      error => console.warn('jupyter-mlcontainer: restore check failed', error)
    );
  };
  if (labShell) {
    labShell.currentChanged.connect((_, args) => check(args.newValue));
  }
  void app.restored.then(() => check(app.shell.currentWidget));
}

async function offerRestore(
  app: JupyterFrontEnd,
  model: MLContainerModel,
  widget: INotebookLike | null,
  asked: Set<string>
): Promise<void> {
  const context = widget?.context;
  if (!widget || !context?.path || !widget.sessionContext) {
    return;
  }
  const path = context.path;
  if (asked.has(path)) {
    return;
  }
  asked.add(path);
  await context.ready;
  const record = getMetadata(context.model, 'mlcontainer') as
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
    plan = await restorePlan(serverPath);
  } catch (error) {
    await showErrorMessage(
      'This notebook\'s kernel cannot be restored',
      errorMessage(error)
    );
    return;
  }
  const answer = await showDialog({
    title: 'Restore the container kernel?',
    body: new Widget({ node: planView(plan) }),
    buttons: [
      Dialog.cancelButton({ label: 'Not now' }),
      Dialog.okButton({ label: 'Restore kernel' })
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
    const result = await restoreNotebook(serverPath, plan.fingerprint);
    if ('kernelspec' in result) {
      kernelspec = result.kernelspec;
    } else {
      const job = await followBuild(model, result.job, image);
      if (job.state !== 'done') {
        await showErrorMessage(
          `Could not restore ${image}`,
          job.error ?? `The ${job.kind} ended: ${job.state}.`
        );
        return;
      }
      kernelspec = job.result?.kernelspec ?? plan.kernelspec;
    }
    await specs.refreshSpecs();
    if (!widget.isDisposed) {
      await widget.sessionContext.changeKernel({ name: kernelspec });
    }
    Notification.success(`Kernel "${kernelspec}" restored for ${path}.`, {
      autoClose: 5000
    });
  } catch (error) {
    await showErrorMessage(
      'Could not restore the kernel',
      errorMessage(error)
    );
  }
}

/**
 * The plan as the dialog's body. Everything in it comes from an untrusted
 * notebook and its folder: it is set as text, never as markup.
 */
function planView(plan: IRestorePlan): HTMLElement {
  const node = document.createElement('div');
  node.className = 'mlc-restore-dialog';
  node.dataset.testid = 'mlc-restore-dialog';
  const add = (tag: string, text: string, testid?: string): HTMLElement => {
    const element = document.createElement(tag);
    element.textContent = text;
    if (testid) {
      element.dataset.testid = testid;
    }
    node.appendChild(element);
    return element;
  };
  const how = {
    present: `Use the image ${plan.image}, which is here.`,
    pull:
      `Pull ${plan.recorded_image} from its registry` +
      (plan.build_if_pull_fails
        ? `; if that fails, build ${plan.build_tag} from ${plan.dockerfile}.`
        : '.'),
    build: `Build the image ${plan.build_tag} from ${plan.dockerfile}.`
  }[plan.source];
  add('p', how, 'mlc-restore-source');
  add('p', `Add the kernel "${plan.kernelspec}".`, 'mlc-restore-kernelspec');
  for (const note of [...plan.notes, plan.kernelspec_note].filter(n => n)) {
    add('p', note, 'mlc-restore-note').className = 'mlc-restore-note';
  }
  if (plan.source !== 'present' && plan.dockerfile_text !== null) {
    const files = [plan.dockerfile ?? 'Dockerfile', ...plan.context_files];
    add(
      'p',
      `The build runs this Dockerfile's RUN lines on this machine and sends ` +
        `${files.join(', ')} (${formatBytes(plan.context_bytes)}). ` +
        'Read it before you restore: it comes with the notebook.',
      'mlc-restore-context'
    );
    add('pre', plan.dockerfile_text, 'mlc-restore-dockerfile').className =
      'mlc-build-log mlc-restore-dockerfile';
  }
  return node;
}

/** Show a build job (panel row and a notification) until it ends. */
async function followBuild(
  model: MLContainerModel,
  job: IJob,
  image: string
): Promise<IJob> {
  model.track(job);
  const verb = job.kind === 'pull' ? 'Pulling' : 'Building';
  const id = Notification.emit(`${verb} ${image}…`, 'in-progress', {
    autoClose: false
  });
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
        `Building ${image}: step ${steps.current}/${steps.total} ` +
        `(${percent((steps.current - 1) / steps.total)})` +
        (last ? `\n${last.slice(0, 120)}` : ''),
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
