/**
 * "Freeze" a running container kernel: the server writes a Dockerfile and a
 * requirements file reproducing it; this shows what was written, records the
 * `mlcontainer` metadata in the notebook when it is open here (saved with the
 * notebook, never written to the file by us), and offers to build the image.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Dialog,
  InputDialog,
  Notification,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { errorMessage, errorStatus } from './format';
import { MLContainerModel } from './model';
import { IContainerKernel, IFreezeRecord, IFreezeResult } from './tokens';

/** The panel's open command (see index.ts). */
const OPEN_PANEL = 'mlcontainer:open-panel';

/** A document widget, duck-typed (no @jupyterlab/notebook dependency). */
interface IDocumentLike {
  context?: {
    path?: string;
    localPath?: string;
    model?: IModelLike;
  };
}

/** A notebook model, JupyterLab 4 (`setMetadata`) or older (`metadata.set`). */
export interface IModelLike {
  setMetadata?: (key: string, value: unknown) => void;
  getMetadata?: (key: string) => unknown;
  metadata?: {
    set?: (key: string, value: unknown) => void;
    get?: (key: string) => unknown;
  };
}

/** The open document of a path (relative to the server root), if any. */
export function findDocument(
  app: JupyterFrontEnd,
  path: string
): IDocumentLike | null {
  for (const widget of app.shell.widgets('main')) {
    const context = (widget as IDocumentLike).context;
    if (context && (context.path === path || context.localPath === path)) {
      return widget as IDocumentLike;
    }
  }
  return null;
}

/** Read a metadata key of a duck-typed notebook model. */
export function getMetadata(model: IModelLike | undefined, key: string): any {
  if (!model) {
    return undefined;
  }
  if (typeof model.getMetadata === 'function') {
    return model.getMetadata(key);
  }
  return model.metadata?.get?.(key);
}

/** Set a metadata key of a duck-typed notebook model; false if impossible. */
function setMetadata(
  model: IModelLike | undefined,
  key: string,
  value: unknown
): boolean {
  if (model && typeof model.setMetadata === 'function') {
    model.setMetadata(key, value);
    return true;
  }
  if (model?.metadata && typeof model.metadata.set === 'function') {
    model.metadata.set(key, value);
    return true;
  }
  return false;
}

/** Freeze a kernel: ask before overwriting, show the result, offer a build. */
export async function freezeKernel(
  app: JupyterFrontEnd,
  model: MLContainerModel,
  kernel: IContainerKernel
): Promise<void> {
  let result: IFreezeResult;
  try {
    try {
      result = await model.freeze(kernel.kernel_id, false);
    } catch (error) {
      if (errorStatus(error) !== 409) {
        throw error;
      }
      const answer = await showDialog({
        title: 'Overwrite the Dockerfile?',
        body: errorMessage(error),
        buttons: [
          Dialog.cancelButton(),
          Dialog.warnButton({ label: 'Overwrite' })
        ]
      });
      if (!answer.button.accept) {
        return;
      }
      result = await model.freeze(kernel.kernel_id, true);
    }
  } catch (error) {
    await showErrorMessage('Could not freeze the kernel', errorMessage(error));
    return;
  }

  const record = result.notebook_metadata?.mlcontainer;
  let recorded: 'yes' | 'not-open' | 'none' = 'none';
  if (record && result.notebook_path) {
    const doc = findDocument(app, result.notebook_path);
    recorded =
      doc && setMetadata(doc.context?.model, 'mlcontainer', record)
        ? 'yes'
        : 'not-open';
  }

  const dialog = new Dialog({
    title: 'Kernel frozen',
    body: new FreezeResultBody(result, recorded),
    buttons: [
      Dialog.cancelButton({ label: 'Close' }),
      Dialog.okButton({ label: 'Build image' })
    ],
    defaultButton: 0
  });
  dialog.node
    .querySelector('.jp-Dialog-footer .jp-mod-accept')
    ?.setAttribute('data-testid', 'mlc-build-button');
  const answer = await dialog.launch();
  if (answer.button.accept) {
    await buildFrozen(app, model, result, record);
  }
}

/** Start building the image of a frozen kernel; the panel shows the job. */
async function buildFrozen(
  app: JupyterFrontEnd,
  model: MLContainerModel,
  result: IFreezeResult,
  record: IFreezeRecord | undefined
): Promise<void> {
  let tag = record?.image ?? '';
  if (!tag) {
    const answer = await InputDialog.getText({
      title: 'Tag of the image to build',
      placeholder: 'name:tag'
    });
    if (!answer.button.accept || !answer.value?.trim()) {
      return;
    }
    tag = answer.value.trim();
  }
  const dockerfile = result.notebook_path
    ? PathExt.join(
        PathExt.dirname(result.notebook_path),
        PathExt.basename(result.dockerfile_path)
      )
    : result.dockerfile_path;
  try {
    await model.build({ dockerfile, tag });
  } catch (error) {
    await showErrorMessage(`Could not build ${tag}`, errorMessage(error));
    return;
  }
  Notification.info(`Building ${tag}…`, {
    autoClose: 5000,
    actions: [
      {
        label: 'Show progress',
        callback: () => void app.commands.execute(OPEN_PANEL)
      }
    ]
  });
  void app.commands.execute(OPEN_PANEL);
}

/** What a freeze wrote: Dockerfile, base, counts, warnings, metadata. */
class FreezeResultBody extends Widget {
  constructor(result: IFreezeResult, recorded: 'yes' | 'not-open' | 'none') {
    super();
    this.addClass('mlc-freeze-result');
    this.node.dataset.testid = 'mlc-freeze-result';
    const line = (label: string, value: string, testid?: string) => {
      const p = document.createElement('p');
      const strong = document.createElement('strong');
      strong.textContent = `${label}: `;
      const code = document.createElement('code');
      code.textContent = value;
      p.append(strong, code);
      if (testid) {
        p.dataset.testid = testid;
      }
      this.node.appendChild(p);
      return p;
    };
    const text = (value: string, className = '', testid?: string) => {
      const p = document.createElement('p');
      p.textContent = value;
      p.className = className;
      if (testid) {
        p.dataset.testid = testid;
      }
      this.node.appendChild(p);
      return p;
    };

    line('Dockerfile', result.dockerfile_path, 'mlc-freeze-dockerfile');
    line('Requirements', result.requirements_path);
    if (result.base_digest) {
      line(
        'Base',
        `${result.base_image}@${result.base_digest}`,
        'mlc-freeze-base'
      );
    } else {
      line('Base', result.base_image, 'mlc-freeze-base');
      text(
        `${result.base_image} has no registry digest: the Dockerfile is not ` +
          'portable until that image is pushed to a registry.',
        'mlc-message mlc-message-warning',
        'mlc-freeze-not-portable'
      );
    }
    const count = (o: object | undefined) => Object.keys(o ?? {}).length;
    text(
      `${count(result.packages)} Python packages, ` +
        `${count(result.apt_packages)} apt packages, ` +
        (count(result.conda_packages)
          ? `${count(result.conda_packages)} conda packages, `
          : '') +
        `${count(result.env)} environment variables ` +
        `(${result.seconds.toFixed(1)} s).`,
      '',
      'mlc-freeze-counts'
    );
    if (result.notebook_path && recorded === 'yes') {
      text(
        `Recorded in the metadata of ${result.notebook_path}: save the ` +
          'notebook to keep it.',
        'mlc-message mlc-message-info'
      );
    } else if (result.notebook_path && recorded === 'not-open') {
      text(
        `${result.notebook_path} is not open here: its metadata was not updated.`,
        'mlc-message mlc-message-hint'
      );
    }
    const warnings = result.warnings ?? [];
    if (warnings.length > 0) {
      const ul = document.createElement('ul');
      ul.className = 'mlc-freeze-warnings';
      ul.dataset.testid = 'mlc-freeze-warnings';
      for (const warning of warnings) {
        const li = document.createElement('li');
        li.textContent = warning;
        ul.appendChild(li);
      }
      text('Warnings:', 'mlc-freeze-warnings-title');
      this.node.appendChild(ul);
    }
  }
}
