/**
 * Restore on open: a notebook frozen elsewhere carries `metadata.mlcontainer`
 * (image, Dockerfile, kernelspec). When such a notebook becomes current and
 * its kernelspec is unknown here, offer once (per notebook, per page load) to
 * restore it: the server writes the kernelspec, building the image from the
 * recorded Dockerfile if needed; then the notebook switches to that kernel.
 */
import { ILabShell, JupyterFrontEnd } from '@jupyterlab/application';
import {
  Dialog,
  Notification,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { restoreNotebook } from './api';
import { errorMessage, percent } from './format';
import { getMetadata, IModelLike } from './freeze';
import { MLContainerModel } from './model';
import { IFreezeRecord, IJob } from './tokens';

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
  const image = record.image ?? 'an unknown image';
  const dockerfile = record.dockerfile
    ? PathExt.join(PathExt.dirname(serverPath), record.dockerfile)
    : 'its recorded Dockerfile';
  const body = document.createElement('div');
  body.className = 'mlc-restore-dialog';
  body.dataset.testid = 'mlc-restore-dialog';
  body.textContent =
    `This notebook was frozen with image ${image}. Build it from ` +
    `${dockerfile} (or use it if present) and add its kernel ` +
    `"${record.kernelspec}"?`;
  const answer = await showDialog({
    title: 'Restore the container kernel?',
    body: new Widget({ node: body }),
    buttons: [
      Dialog.cancelButton({ label: 'Not now' }),
      Dialog.okButton({ label: 'Restore kernel' })
    ]
  });
  if (!answer.button.accept) {
    return;
  }

  let kernelspec: string;
  try {
    const result = await restoreNotebook(serverPath);
    if ('kernelspec' in result) {
      kernelspec = result.kernelspec;
    } else {
      const job = await followBuild(model, result.job, image);
      if (job.state !== 'done') {
        await showErrorMessage(
          `Could not build ${image}`,
          job.error ?? `The build ended: ${job.state}.`
        );
        return;
      }
      kernelspec = job.result?.kernelspec ?? record.kernelspec;
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

/** Show a build job (panel row and a notification) until it ends. */
async function followBuild(
  model: MLContainerModel,
  job: IJob,
  image: string
): Promise<IJob> {
  model.track(job);
  const id = Notification.emit(`Building ${image}…`, 'in-progress', {
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
